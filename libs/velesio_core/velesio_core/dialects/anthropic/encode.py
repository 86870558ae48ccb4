"""Anthropic's answers: messages, their event stream, token counts and errors.

Built from velesio's chat results and token events (llama.cpp's vocabulary, OpenAI's shape for
tool calls and reasoning, see events.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import ErrorKind, GatewayError
from ...events import Event, EventType

_STOP_REASONS = {"eos": "end_turn", "word": "stop_sequence", "limit": "max_tokens", "tool_calls": "tool_use"}

#: Anthropic's error type and HTTP status for each kind of error (docs.claude.com/en/api/errors).
#: Features velesio lacks are the client's request it cannot serve: a 400, as Anthropic answers
#: a request for a feature a model lacks; a full queue is Anthropic's "overloaded".
_ERRORS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorKind.EXCEED_CONTEXT_SIZE: (400, "invalid_request_error"),
    ErrorKind.NOT_SUPPORTED: (400, "invalid_request_error"),
    ErrorKind.AUTHENTICATION: (401, "authentication_error"),
    ErrorKind.PERMISSION: (403, "permission_error"),
    ErrorKind.NOT_FOUND: (404, "not_found_error"),
    ErrorKind.METHOD_NOT_ALLOWED: (405, "invalid_request_error"),
    ErrorKind.REQUEST_TIMEOUT: (408, "timeout_error"),
    ErrorKind.CONFLICT: (409, "invalid_request_error"),
    ErrorKind.PAYLOAD_TOO_LARGE: (413, "request_too_large"),
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: (415, "invalid_request_error"),
    # Anthropic has one type for both: a spent quota is a rate limit that resets at midnight UTC.
    ErrorKind.RATE_LIMITED: (429, "rate_limit_error"),
    ErrorKind.QUOTA_EXCEEDED: (429, "rate_limit_error"),
    ErrorKind.SERVER: (500, "api_error"),
    ErrorKind.UNAVAILABLE: (529, "overloaded_error"),
    ErrorKind.TIMEOUT: (504, "timeout_error"),
}


def error_status(error: GatewayError) -> int:
    return _ERRORS[error.kind][0]


def error_object(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERRORS[error.kind][1], "message": error.message}}


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps(error_object(error))


def stop_reason(result: dict[str, Any]) -> str:
    return _STOP_REASONS.get(result.get("stop_type") or "eos", "end_turn")


def usage(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "input_tokens": int(result.get("tokens_evaluated") or 0),
        "output_tokens": int(result.get("tokens_predicted") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def tool_use_block(call: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        # A model that wrote broken JSON: the client still sees what it wrote.
        arguments = {"arguments": function.get("arguments")}
    return {
        "type": "tool_use",
        "id": call.get("id") or fallback_id,
        "name": function.get("name", ""),
        "input": arguments if isinstance(arguments, dict) else {"value": arguments},
    }


def message(result: dict[str, Any], *, id: str, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if result.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": result["reasoning_content"], "signature": ""})
    if result.get("content"):
        content.append({"type": "text", "text": result["content"]})
    for index, call in enumerate(result.get("tool_calls") or ()):
        content.append(tool_use_block(call, f"toolu_{id}_{index}"))
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(result),
        "stop_sequence": None,
        "usage": usage(result),
    }


def token_count(result: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": len(result.get("tokens") or ())}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = _event("ping", {"type": "ping"})


class MessageEvents:
    """Anthropic's event stream: message_start and a ping as soon as the job is queued, a ping
    every few seconds while it waits, then content blocks (thinking, text, tool_use) each opened,
    filled with deltas and stopped, then message_delta and message_stop."""

    def __init__(self, *, id: str, model: str) -> None:
        self._id = id
        self._model = model
        self._started = False
        self._index = -1
        self._open: str | None = None  # "thinking", "text" or "tool_use:<OpenAI index>"

    def opening(self) -> list[bytes]:
        return self._start()

    def keepalive(self) -> bytes:
        return _PING

    def encode(self, event: Event) -> list[bytes]:
        if event.type is EventType.ERROR:
            return [_event("error", error_object(event.as_error()))]
        if event.type not in (EventType.STARTED, EventType.TOKEN, EventType.RESULT):
            return []
        out = self._start()
        if event.type is EventType.TOKEN:
            out += self._piece(event.value())
        elif event.type is EventType.RESULT:
            out += self._end(event.value())
        return out

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        head: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant", "model": self._model}
        head |= {"content": [], "stop_reason": None, "stop_sequence": None, "usage": usage({})}
        return [_event("message_start", {"type": "message_start", "message": head}), _PING]

    def _open_block(self, key: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self._index += 1
        self._open = key
        return [
            *out,
            _event(
                "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
            ),
        ]

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _piece(self, piece: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if piece.get("reasoning_content"):
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta({"type": "thinking_delta", "thinking": piece["reasoning_content"]}))
        if piece.get("content"):
            if self._open != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": piece["content"]}))
        for call in piece.get("tool_calls") or ():
            key = f"tool_use:{call.get('index', 0)}"
            if self._open != key:
                block = tool_use_block(call, f"toolu_{self._id}_{call.get('index', 0)}")
                out += self._open_block(key, {**block, "input": {}})
            arguments = (call.get("function") or {}).get("arguments")
            if arguments:
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _end(self, result: dict[str, Any]) -> list[bytes]:
        # A whole answer (content not streamed as tokens) still arrives as blocks.
        out = self._piece({key: result[key] for key in ("content", "reasoning_content") if result.get(key)})
        for index, call in enumerate(result.get("tool_calls") or ()):
            out += self._piece({"tool_calls": [{**call, "index": call.get("index", index)}]})
        out += self._close_block()
        delta = {"stop_reason": stop_reason(result), "stop_sequence": None}
        counts = usage(result)
        return [
            *out,
            _event("message_delta", {"type": "message_delta", "delta": delta, "usage": counts}),
            _event("message_stop", {"type": "message_stop"}),
        ]
