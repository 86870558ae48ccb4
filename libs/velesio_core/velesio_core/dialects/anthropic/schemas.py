"""Request schemas of Anthropic's Messages API.

Strict on what velesio reads, permissive on the rest: Claude Code and the SDKs send fields that
steer Anthropic's own service (``cache_control`` on blocks, ``service_tier``, ``container``),
which mean nothing to a local model and are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Message(_Lenient):
    #: Claude Code puts system turns among the messages, beside the top-level system prompt.
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class Tool(_Lenient):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    #: Absent on Anthropic's server tools (web search, code execution), which velesio does not run.
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(_Lenient):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Annotated[int, Field(ge=0)] | None = None


class _Conversation(_Lenient):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Message], Field(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


class MessagesRequest(_Conversation):
    """POST /v1/messages."""

    max_tokens: Annotated[int, Field(ge=1)]
    stream: bool | None = None
    stop_sequences: Annotated[list[str], Field(max_length=16)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: dict[str, Any] | None = None


class CountTokensRequest(_Conversation):
    """POST /v1/messages/count_tokens: the same conversation, nothing generated."""
