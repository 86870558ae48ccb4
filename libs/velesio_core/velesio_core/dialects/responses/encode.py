"""OpenAI's Responses answers: response objects, their event stream and token counts.

Built from velesio's chat results and token events (llama.cpp's vocabulary, OpenAI's chat shape
for tool calls and reasoning, see events.py). Output item ids derive from the response id, so a
streamed response and the same response read back later name their items alike.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import ErrorKind, GatewayError
from ...events import Event, EventType


def usage(result: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(result.get("tokens_evaluated") or 0), int(result.get("tokens_predicted") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def head(request: dict[str, Any], *, id: str, model: str, created_at: int) -> dict[str, Any]:
    """A response object before any output: the request's settings echoed, as OpenAI's are.
    ``request`` is the request body as parsed (unset fields absent)."""
    text = request.get("text") or {}
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None, **(request.get("reasoning") or {})},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _message_item(id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": f"msg_{id}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def _reasoning_item(id: str, text: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if text else []
    return {"id": f"rs_{id}", "type": "reasoning", "summary": [], "content": content}


def _call_item(id: str, index: int, call: dict[str, Any], status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": f"fc_{id}_{index}",
        "type": "function_call",
        "status": status,
        "call_id": call.get("id") or f"call_{id}_{index}",
        "name": function.get("name", ""),
        "arguments": function.get("arguments") or "",
    }


def output_items(result: dict[str, Any], *, id: str) -> list[dict[str, Any]]:
    """The output of a whole (not streamed) result: reasoning, then the message, then tool calls."""
    items = []
    if result.get("reasoning_content"):
        items.append(_reasoning_item(id, result["reasoning_content"]))
    if result.get("content") or not result.get("tool_calls"):
        items.append(_message_item(id, result.get("content") or "", "completed"))
    for index, call in enumerate(result.get("tool_calls") or ()):
        items.append(_call_item(id, index, call, "completed"))
    return items


def finished(response: dict[str, Any], result: dict[str, Any], output: list[dict[str, Any]]) -> dict[str, Any]:
    """``response`` (a head) ended with ``result``'s usage and stop, holding ``output``."""
    incomplete = result.get("stop_type") == "limit"
    return {
        **response,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": output,
        "usage": usage(result),
    }


def _item_base(response_id: str) -> str:
    """What a response's output item ids are made of: its own id without the ``resp_``."""
    return response_id.removeprefix("resp_")


def response(result: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    return finished(head, result, output_items(result, id=_item_base(head["id"])))


def output_messages(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished response's output as the chat messages a later turn sees (previous_response_id)."""
    text = "".join(
        part.get("text", "") for item in response["output"] if item["type"] == "message" for part in item["content"]
    )
    calls = [
        {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
        for item in response["output"]
        if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return [message]


def deleted(id: str) -> dict[str, Any]:
    return {"id": id, "object": "response.deleted", "deleted": True}


def input_tokens(result: dict[str, Any]) -> dict[str, Any]:
    return {"object": "response.input_tokens", "input_tokens": len(result.get("tokens") or ())}


def _failure(error: GatewayError) -> dict[str, Any]:
    code = "invalid_prompt" if error.status < 500 else "server_error"
    if error.kind in (ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT):
        code = "rate_limit_exceeded" if error.kind is ErrorKind.UNAVAILABLE else "server_error"
    return {"code": code, "message": error.message}


class ResponseEvents:
    """The Responses event stream, each event numbered: response.created and .in_progress, then
    each output item added, filled with deltas and done, then response.completed (or
    .incomplete at the token limit, .failed on an error). The last event carries the finished
    response, which :attr:`final` keeps for storing."""

    def __init__(self, head: dict[str, Any]) -> None:
        self._head = head
        self._id = _item_base(head["id"])
        self._sequence = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._open_key: str | None = None
        self._text = ""
        self.final: dict[str, Any] | None = None

    def _event(self, type: str, **fields: Any) -> bytes:
        data = {"type": type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + type.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def encode(self, event: Event) -> list[bytes]:
        if event.type is EventType.ERROR:
            failed = {**self._head, "status": "failed", "error": _failure(event.as_error()), "output": self._output}
            return [*self._start(), self._event("response.failed", response=failed)]
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
        return [
            self._event("response.created", response=self._head),
            self._event("response.in_progress", response=self._head),
        ]

    @property
    def _index(self) -> int:
        return len(self._output)

    def _add(self, key: str, item: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._open, self._open_key, self._text = item, key, ""
        out.append(self._event("response.output_item.added", output_index=self._index, item=item))
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index,
                    content_index=0,
                    part=part,
                )
            )
        return out

    def _close(self) -> list[bytes]:
        item = self._open
        if item is None:
            return []
        where = {"item_id": item["id"], "output_index": self._index}
        out = []
        if item["type"] == "message":
            item = _message_item(self._id, self._text, "completed")
            part = item["content"][0]
            out.append(self._event("response.output_text.done", **where, content_index=0, text=self._text, logprobs=[]))
            out.append(self._event("response.content_part.done", **where, content_index=0, part=part))
        elif item["type"] == "reasoning":
            item = _reasoning_item(self._id, self._text)
            out.append(self._event("response.reasoning_text.done", **where, content_index=0, text=self._text))
        else:
            item = {**item, "status": "completed", "arguments": self._text}
            out.append(
                self._event("response.function_call_arguments.done", **where, name=item["name"], arguments=self._text)
            )
        out.append(self._event("response.output_item.done", output_index=self._index, item=item))
        self._output.append(item)
        self._open = self._open_key = None
        return out

    def _piece(self, piece: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if piece.get("reasoning_content"):
            if self._open_key != "reasoning":
                out += self._add("reasoning", _reasoning_item(self._id, ""))
            self._text += piece["reasoning_content"]
            where = {"item_id": f"rs_{self._id}", "output_index": self._index, "content_index": 0}
            out.append(self._event("response.reasoning_text.delta", **where, delta=piece["reasoning_content"]))
        if piece.get("content"):
            if self._open_key != "message":
                out += self._add("message", _message_item(self._id, "", "in_progress"))
            self._text += piece["content"]
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=f"msg_{self._id}",
                    output_index=self._index,
                    content_index=0,
                    delta=piece["content"],
                    logprobs=[],
                )
            )
        for call in piece.get("tool_calls") or ():
            index = call.get("index", 0)
            key = f"call:{index}"
            if self._open_key != key:
                out += self._add(key, _call_item(self._id, index, call, "in_progress"))
            arguments = (call.get("function") or {}).get("arguments")
            if arguments:
                self._text += arguments
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=self._open["id"],  # type: ignore[index]
                        output_index=self._index,
                        delta=arguments,
                    )
                )
        return out

    def _end(self, result: dict[str, Any]) -> list[bytes]:
        # A whole answer (content not streamed as tokens) still arrives as items.
        out = self._piece({key: result[key] for key in ("reasoning_content", "content") if result.get(key)})
        for index, call in enumerate(result.get("tool_calls") or ()):
            out += self._piece({"tool_calls": [{**call, "index": call.get("index", index)}]})
        if not self._output and self._open is None:
            out += self._add("message", _message_item(self._id, "", "in_progress"))
        out += self._close()
        self.final = finished(self._head, result, self._output)
        kind = "response.incomplete" if self.final["status"] == "incomplete" else "response.completed"
        return [*out, self._event(kind, response=self.final)]
