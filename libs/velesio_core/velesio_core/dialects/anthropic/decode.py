"""Anthropic Messages requests as velesio chat payloads (OpenAI's chat body, as llama-server takes it).

Content blocks become OpenAI message parts: ``text`` a text part, ``image`` an ``image_url``
part, an assistant's ``tool_use`` blocks its ``tool_calls``, a user's ``tool_result`` blocks
``tool`` messages (in the order they came). ``thinking`` blocks sent back are dropped: a local
model reasons afresh each turn, and their signatures are Anthropic's.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import invalid_request, not_supported
from ..tools import choose_tool
from .schemas import CountTokensRequest, Message, MessagesRequest, Thinking, Tool, ToolChoice

_IGNORED_BLOCKS = {"thinking", "redacted_thinking"}


def chat_payload(request: MessagesRequest) -> dict[str, Any]:
    payload = conversation_payload(request)
    payload["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        payload["stop"] = request.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            payload[name] = value
    return payload


def conversation_payload(request: MessagesRequest | CountTokensRequest) -> dict[str, Any]:
    """The messages and tools of a request: all a chat needs but its sampling (what count_tokens counts)."""
    messages: list[dict[str, Any]] = []
    system = _system_text(request.system)
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(request.messages):
        messages.extend(_messages(message, f"messages.{index}"))
    payload: dict[str, Any] = {"messages": messages}
    if request.tools:
        payload["tools"] = [_tool(tool, f"tools.{index}") for index, tool in enumerate(request.tools)]
    if request.tool_choice is not None:
        payload.update(_tool_choice(request.tool_choice, payload.get("tools")))
    if request.thinking is not None:
        payload.update(_thinking(request.thinking))
    return payload


def _system_text(system: str | list[dict[str, Any]] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    texts = []
    for index, block in enumerate(system):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid_request(f"system.{index}: system blocks must be text blocks")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _messages(message: Message, where: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for index, block in enumerate(message.content):
        kind = block.get("type")
        at = f"{where}.content.{index}"
        if kind == "text" or (message.role == "system" and kind is None):
            parts.append({"type": "text", "text": _string(block, "text", at)})
        elif kind == "image" and message.role == "user":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}})
        elif kind == "tool_use" and message.role == "assistant":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            call = {"name": _string(block, "name", at), "arguments": arguments}
            tool_calls.append({"id": _string(block, "id", at), "type": "function", "function": call})
        elif kind == "tool_result" and message.role == "user":
            results.append(_tool_result(block, at))
        elif kind in _IGNORED_BLOCKS:
            continue
        else:
            raise not_supported(f"{at}: {kind!r} blocks are not supported in {message.role} messages")
    out = list(results)
    if tool_calls:
        out.append({"role": "assistant", "content": _joined(parts) or None, "tool_calls": tool_calls})
    elif parts:
        only_text = all(part["type"] == "text" for part in parts)
        out.append({"role": message.role, "content": _joined(parts) if only_text else parts})
    return out


def _joined(parts: list[dict[str, Any]]) -> str:
    return "".join(part["text"] for part in parts if part["type"] == "text")


def _string(block: dict[str, Any], key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise invalid_request(f"{where}.{key}: Field required (a string)")
    return value


def _image_url(source: Any, where: str) -> str:
    if not isinstance(source, dict):
        raise invalid_request(f"{where}.source: Field required")
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    url = source.get("url")
    if source.get("type") == "url" and isinstance(url, str):
        return url
    raise not_supported(f"{where}.source: images must be base64 or url sources")


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content", "")
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if part.get("type") != "text":
                raise not_supported(f"{where}.content.{index}: tool results may hold text only")
            texts.append(part.get("text", ""))
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise invalid_request(f"{where}.content: a string or a list of text blocks")
    if block.get("is_error"):
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": _string(block, "tool_use_id", where), "content": content}


def _tool(tool: Tool, where: str) -> dict[str, Any]:
    if tool.input_schema is None:
        raise not_supported(f"{where}: {tool.type or 'server'} tools are Anthropic's own; only custom tools run here")
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    mode = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}[choice.type]
    payload = choose_tool(mode, choice.name, tools, where="tool_choice.name")
    if choice.disable_parallel_tool_use:
        payload["parallel_tool_calls"] = False
    return payload


def _thinking(thinking: Thinking) -> dict[str, Any]:
    # Models that reason only when asked (Qwen 3 and the like) take enable_thinking through their
    # template; llama-server separates the reasoning from the answer either way.
    return {"chat_template_kwargs": {"enable_thinking": thinking.type != "disabled"}}
