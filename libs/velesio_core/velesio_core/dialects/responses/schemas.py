"""Request schemas of OpenAI's Responses API.

Strict on what velesio reads, permissive on the rest: clients send fields that steer OpenAI's
own service (``include``, ``prompt_cache_key``, ``service_tier``, ``safety_identifier``), which
mean nothing to a local model and are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class TextFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextOptions(_Lenient):
    format: TextFormat | None = None


class Reasoning(_Lenient):
    effort: str | None = None
    summary: str | None = None


class _Conversation(_Lenient):
    model: Annotated[str, Field(min_length=1)] | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    previous_response_id: str | None = None
    reasoning: Reasoning | None = None
    parallel_tool_calls: bool | None = None


class ResponsesRequest(_Conversation):
    """POST /v1/responses."""

    model: Annotated[str, Field(min_length=1)]
    input: str | list[dict[str, Any]]
    stream: bool | None = None
    store: bool | None = None
    background: bool | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    text: TextOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    conversation: str | dict[str, Any] | None = None


class InputTokensRequest(_Conversation):
    """POST /v1/responses/input_tokens: the same conversation, nothing generated."""
