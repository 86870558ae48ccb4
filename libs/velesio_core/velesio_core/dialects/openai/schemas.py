"""Request schemas of OpenAI's API.

Strict on types and bounds, permissive on unknown fields: llama.cpp's OpenAI-compatible server
takes its own sampling options (top_k, min_p, repeat_penalty, grammar, ...) beside OpenAI's, and
clients built for it send them; they travel on to llama-server.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    include_usage: bool | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Annotated[str, Field(min_length=1)]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


#: The model a request names; none is the default one (see registry.find_drop_in_model).
ModelName = Annotated[str, Field(min_length=1)] | None


class _Generation(_Request):
    model: ModelName = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=16)] | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Generation):
    """POST /v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(_Generation):
    """POST /v1/completions (the legacy text completion API)."""

    #: One text, one list of token ids, or several of either (one choice each, as llama-server answers).
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=32)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1, max_length=32)]
    )
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1)] | None = None


class EmbeddingsRequest(_Request):
    """POST /v1/embeddings."""

    model: ModelName = None
    #: A text, token ids, or a list of texts and token-id arrays (OpenAI's spec), also mixed in one
    #: list as llama.cpp takes them.
    input: str | Annotated[list[str | int | Annotated[list[int], Field(min_length=1)]], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None
