"""Tool calls as OpenAI's chat streams deliver them, which is also how llama-server's do."""

from __future__ import annotations

from ...results import ToolCall, ToolCallDelta


def merge_tool_call(calls: dict[int, ToolCall], delta: ToolCallDelta) -> None:
    """Add one streamed fragment to ``calls`` (by the call's index): the id and name come first,
    the arguments in pieces of a JSON string."""
    call = calls.setdefault(
        delta.get("index", 0), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    call["id"] = delta.get("id") or call["id"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def merged_tool_calls(calls: dict[int, ToolCall]) -> list[ToolCall]:
    """The whole calls, in the order of their indices."""
    return [calls[index] for index in sorted(calls)]
