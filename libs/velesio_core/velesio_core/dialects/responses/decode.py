"""Responses requests as velesio chat payloads (OpenAI's chat body, as llama-server takes it).

Input items become chat messages: a message item a message (``developer`` becomes ``system``),
``function_call`` items an assistant message's ``tool_calls`` (consecutive calls are one turn),
``function_call_output`` items ``tool`` messages. ``reasoning`` items sent back are dropped: a
local model reasons afresh each turn. ``instructions`` become the first system message; as in
OpenAI's API, they are not carried over to a later response through ``previous_response_id``.
"""

from __future__ import annotations

from typing import Any

from ...errors import invalid_request, not_supported
from ..tools import choose_tool
from .schemas import InputTokensRequest, ResponsesRequest

_TEXT_PARTS = {"input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text"}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def input_messages(input: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The chat messages of a request's ``input``."""
    if input is None:
        return []
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(input):
        where = f"input.{index}"
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            function = {"name": _string(item, "name", where), "arguments": _string(item, "arguments", where)}
            call = {"id": _string(item, "call_id", where), "type": "function", "function": function}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else _text_of(output, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": content})
        elif kind == "reasoning":
            continue
        else:
            raise not_supported(f"{where}: {kind!r} input items are not supported")
    return messages


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise invalid_request(f"{where}.role: must be one of user, assistant, system, developer")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise invalid_request(f"{where}.content: a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}.content.{index}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": _string(part, "text", at)})
        elif kind == "input_image":
            if not isinstance(part.get("image_url"), str):
                raise not_supported(f"{at}: images must be given by image_url (a URL or a data: URL), not file_id")
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise not_supported(f"{at}: {kind!r} content parts are not supported")
    if all(part["type"] == "text" for part in parts):
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _text_of(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise invalid_request(f"{where}: a string or a list of content parts")
    texts = []
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
            raise not_supported(f"{where}.{index}: only text is supported in tool outputs")
        texts.append(_string(part, "text", f"{where}.{index}"))
    return "".join(texts)


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid_request(f"{where}.{key}: Field required (a string)")
    return value


def _tools(tools: list[dict[str, Any]], where: str = "tools") -> list[dict[str, Any]]:
    """Function tools as chat tools. A namespace's functions are offered by their own names;
    OpenAI's hosted tools (web_search, file_search, ...) run on OpenAI's side, so they are left
    out: the model is not told of tools nobody here would run. Codex sends web_search always."""
    converted = []
    for index, tool in enumerate(tools):
        at = f"{where}.{index}"
        if tool.get("type") == "namespace":
            converted += _tools(tool.get("tools") or [], f"{at}.tools")
            continue
        if tool.get("type") != "function":
            continue
        function = {"name": _string(tool, "name", at), "parameters": tool.get("parameters") or {}}
        if tool.get("description"):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: str | dict[str, Any], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise invalid_request("tool_choice: must be auto, none, required or a function")
        return choose_tool(choice, None, tools, where="tool_choice")
    if choice.get("type") == "function":
        return choose_tool("named", choice.get("name"), tools, where="tool_choice.name")
    raise not_supported(f"tool_choice: {choice.get('type')!r} is not supported; only function tools run here")


def conversation_payload(
    request: ResponsesRequest | InputTokensRequest, history: list[dict[str, Any]]
) -> dict[str, Any]:
    """The messages and tools of a request after ``history`` (the messages of the response it
    continues): all a chat needs but its sampling (what input_tokens counts)."""
    messages = [{"role": "system", "content": request.instructions}] if request.instructions else []
    messages += history + input_messages(request.input)
    if not messages:
        raise invalid_request("input: Field required")
    payload: dict[str, Any] = {"messages": messages}
    tools = _tools(request.tools or [])
    if tools:
        payload["tools"] = tools
    if request.tool_choice is not None:
        payload.update(_tool_choice(request.tool_choice, payload.get("tools")))
    if request.parallel_tool_calls is not None:
        payload["parallel_tool_calls"] = request.parallel_tool_calls
    if request.reasoning is not None and request.reasoning.effort is not None:
        # Models with a reasoning switch (gpt-oss, Qwen 3) read it from their template's variables.
        effort = request.reasoning.effort
        payload["chat_template_kwargs"] = {"reasoning_effort": effort, "enable_thinking": effort != "none"}
    return payload


def chat_payload(request: ResponsesRequest, history: list[dict[str, Any]]) -> dict[str, Any]:
    if request.background:
        raise not_supported("background responses are not supported; stream instead")
    if request.conversation is not None:
        raise not_supported("conversation is not supported; use previous_response_id")
    payload = conversation_payload(request, history)
    if request.max_output_tokens is not None:
        payload["max_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            payload[name] = value
    text_format = request.text.format if request.text else None
    if text_format is not None and text_format.type == "json_object":
        payload["response_format"] = {"type": "json_object"}
    elif text_format is not None and text_format.type == "json_schema":
        if text_format.schema_ is None:
            raise invalid_request("text.format.schema: Field required")
        schema = {"name": text_format.name or "response", "schema": text_format.schema_}
        payload["response_format"] = {"type": "json_schema", "json_schema": schema}
    return payload


def stored_messages(request: ResponsesRequest, history: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """What a response keeps for the one that continues it, before its own output: ``history``
    and the request's input (its instructions are not carried over, as OpenAI's are not). None
    when the request asks not to be stored (``store: false``)."""
    if request.store is False:
        return None
    return history + input_messages(request.input)
