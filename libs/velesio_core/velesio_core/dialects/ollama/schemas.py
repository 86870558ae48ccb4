"""Request schemas of Ollama's API (docs/api.md, api/types.go).

Strict on types, permissive on unknown fields. ``options`` are validated by their known names;
those that configure a server rather than a request (num_ctx, num_gpu, num_thread, ...) are the
worker's to decide and are accepted and left out, as a shared server must.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1)]


class Options(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    num_predict: Annotated[int, Field(ge=-2)] | None = None
    num_keep: Annotated[int, Field(ge=-1)] | None = None
    seed: int | None = None
    temperature: Annotated[float, Field(ge=0.0)] | None = None
    top_k: int | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    typical_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_last_n: Annotated[int, Field(ge=-1)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0.0)] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: Annotated[int, Field(ge=0, le=2)] | None = None
    mirostat_tau: Annotated[float, Field(ge=0.0)] | None = None
    mirostat_eta: Annotated[float, Field(ge=0.0)] | None = None
    stop: list[str] | None = None
    # Obsolete in llama.cpp, still sent by Ollama's clients: accepted, typed, unused.
    tfs_z: float | None = None
    penalize_newline: bool | None = None


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    model: Name
    keep_alive: str | int | float | None = None


class _Generation(_Request):
    stream: bool | None = None
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    think: bool | Literal["low", "medium", "high"] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    #: Ollama cuts what does not fit the context when true (its default); llama-server refuses it.
    truncate: bool | None = None
    shift: bool | None = None


class GenerateRequest(_Generation):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool | None = None
    images: list[str] | None = None
    context: list[int] | None = None


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Name
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ChatRequest(_Generation):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(_Request):
    input: str | Annotated[list[str], Field(min_length=1)]
    truncate: bool | None = None
    options: Options | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None


class EmbeddingsRequest(_Request):
    """The legacy /api/embeddings."""

    prompt: str
    options: Options | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    model: Name | None = None
    name: Name | None = None  # what older clients send
    verbose: bool | None = None
