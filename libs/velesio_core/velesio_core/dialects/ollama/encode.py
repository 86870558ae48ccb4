"""Ollama's answers: NDJSON streams, final objects with nanosecond durations, model lists, errors.

Built from velesio's generation results (llama.cpp's vocabulary, see events.py). Zero counts and
durations are left out, as Ollama's Go encoder leaves them out (``omitempty``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson

from ...backends.base import ModelInfo
from ...errors import GatewayError
from ...events import Event, EventType
from ...results import ToolCall
from ..clock import Clock, Instant
from ..openai.tool_calls import merge_tool_call, merged_tool_calls
from .capabilities import capabilities

#: The version of Ollama's API that velesio speaks (clients check it for features).
#: 0.12.11 is the first with logprobs.
API_VERSION = "0.13.0"
RUNNING = b"Ollama is running"


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _nanoseconds(started: Instant, now: Instant) -> int:
    return int((now.monotonic - started.monotonic) * 1e9)


def tagged(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error.message})


def _line(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value) + b"\n"


def done_reason(result: dict[str, Any]) -> str:
    return "length" if result.get("stop_type") == "limit" else "stop"


def _done(result: dict[str, Any], started: Instant, now: Instant) -> dict[str, Any]:
    timings = result.get("timings") or {}
    fields = {
        "done": True,
        "done_reason": done_reason(result),
        "total_duration": _nanoseconds(started, now),
        "prompt_eval_count": int(result.get("tokens_evaluated") or 0),
        "prompt_eval_duration": int(float(timings.get("prompt_ms") or 0) * 1e6),
        "eval_count": int(result.get("tokens_predicted") or 0),
        "eval_duration": int(float(timings.get("predicted_ms") or 0) * 1e6),
    }
    return {key: value for key, value in fields.items() if value or key == "done"}


def tool_calls(openai_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's tool calls (arguments a JSON string) as Ollama's (arguments an object)."""
    calls = []
    for call in openai_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            # Arguments that are not JSON are passed on as the model wrote them.
            with contextlib.suppress(orjson.JSONDecodeError):
                arguments = orjson.loads(arguments)
        calls.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
    return calls


def _token_logprob(entry: dict[str, Any]) -> dict[str, Any]:
    return {"token": entry.get("token", ""), "logprob": entry.get("logprob", 0.0), "bytes": entry.get("bytes")}


def logprobs(entries: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """llama.cpp's per-token probabilities (/completion's completion_probabilities or the chat's
    logprobs.content) as Ollama's, with ``top`` alternatives each (none when 0)."""
    converted = []
    for entry in entries:
        logprob = _token_logprob(entry)
        if top:
            logprob["top_logprobs"] = [_token_logprob(other) for other in (entry.get("top_logprobs") or ())[:top]]
        converted.append(logprob)
    return converted


def _probabilities(result_or_piece: dict[str, Any]) -> list[dict[str, Any]]:
    """llama-server's entries: a completion's ``completion_probabilities``, or a chat's
    ``logprobs`` in OpenAI's shape (``{"content": [...]}``)."""
    entries = result_or_piece.get("completion_probabilities") or result_or_piece.get("logprobs") or []
    if isinstance(entries, dict):
        entries = entries.get("content") or []
    return entries if isinstance(entries, list) else []


def _message(content: str, result_or_piece: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if result_or_piece.get("reasoning_content"):
        message["thinking"] = result_or_piece["reasoning_content"]
    if result_or_piece.get("tool_calls"):
        message["tool_calls"] = tool_calls(result_or_piece["tool_calls"])
    return message


def loaded(model: str, *, unloaded: bool, chat: bool, now: Instant) -> dict[str, Any]:
    """Ollama's answer to a request with nothing to generate: the model is (un)loaded."""
    answer: dict[str, Any] = {"model": model, "created_at": rfc3339(now.wall)}
    answer |= {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
    return {**answer, "done": True, "done_reason": "unload" if unloaded else "load"}


def generate_response(
    result: dict[str, Any],
    *,
    model: str,
    started: Instant,
    now: Instant,
    context: list[int] | None = None,
    top_logprobs: int | None = None,
) -> dict[str, Any]:
    """The whole answer of /api/generate. ``context``: the prompt's tokens, when the answer is to
    carry the conversation's tokens (the prompt's and the response's) for the next request."""
    answer = {"model": model, "created_at": rfc3339(now.wall), "response": result.get("content") or ""}
    if result.get("reasoning_content"):
        answer["thinking"] = result["reasoning_content"]
    answer |= _done(result, started, now)
    if context is not None:
        answer["context"] = [*context, *(result.get("tokens") or ())]
    if top_logprobs is not None:
        answer["logprobs"] = logprobs(_probabilities(result), top_logprobs)
    return answer


def chat_response(
    result: dict[str, Any], *, model: str, started: Instant, now: Instant, top_logprobs: int | None = None
) -> dict[str, Any]:
    message = _message(result.get("content") or "", result)
    answer = {"model": model, "created_at": rfc3339(now.wall), "message": message, **_done(result, started, now)}
    if top_logprobs is not None:
        answer["logprobs"] = logprobs(_probabilities(result), top_logprobs)
    return answer


class GenerateLines:
    """The NDJSON stream of /api/generate. With ``context`` (the prompt's tokens), the final line
    carries them and the response's, which each line's chunk names."""

    def __init__(
        self,
        *,
        model: str,
        started: Instant,
        clock: Clock,
        context: list[int] | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        self._model = model
        self._started = started
        self._clock = clock
        self._context = None if context is None else list(context)
        self._top_logprobs = top_logprobs

    def encode(self, event: Event) -> list[bytes]:
        if event.type is EventType.TOKEN:
            piece = event.value()
            if self._context is not None:
                self._context.extend(piece.get("tokens") or ())
            line = {
                "model": self._model,
                "created_at": rfc3339(self._clock().wall),
                "response": piece.get("content", ""),
            }
            if piece.get("reasoning_content"):
                line["thinking"] = piece["reasoning_content"]
            if self._top_logprobs is not None:
                line["logprobs"] = logprobs(_probabilities(piece), self._top_logprobs)
            return [_line({**line, "done": False})]
        if event.type is EventType.RESULT:
            now = self._clock()
            final: dict[str, Any] = {"model": self._model, "created_at": rfc3339(now.wall), "response": ""}
            final |= _done(event.value(), self._started, now)
            if self._context is not None:
                final["context"] = self._context
            return [_line(final)]
        if event.type is EventType.ERROR:
            # Mid-stream, Ollama reports an error as one more line; the status stays 200.
            return [_line({"error": event.as_error().message})]
        return []


class ChatLines:
    """The NDJSON stream of /api/chat. Tool calls arrive in fragments and leave whole, at the end."""

    def __init__(self, *, model: str, started: Instant, clock: Clock, top_logprobs: int | None = None) -> None:
        self._model = model
        self._started = started
        self._clock = clock
        self._top_logprobs = top_logprobs
        self._calls: dict[int, ToolCall] = {}

    def encode(self, event: Event) -> list[bytes]:
        if event.type is EventType.TOKEN:
            piece = event.value()
            for call in piece.get("tool_calls") or ():
                merge_tool_call(self._calls, call)
            if not piece.get("content") and not piece.get("reasoning_content"):
                return []
            line: dict[str, Any] = {
                "model": self._model,
                "created_at": rfc3339(self._clock().wall),
                "message": _message(piece.get("content", ""), piece),
            }
            if self._top_logprobs is not None:
                line["logprobs"] = logprobs(_probabilities(piece), self._top_logprobs)
            return [_line({**line, "done": False})]
        if event.type is EventType.RESULT:
            now = self._clock()
            message = _message("", {"tool_calls": merged_tool_calls(self._calls)})
            final = {"model": self._model, "created_at": rfc3339(now.wall), "message": message}
            return [_line({**final, **_done(event.value(), self._started, now)})]
        if event.type is EventType.ERROR:
            return [_line({"error": event.as_error().message})]
        return []


def _parameter_size(count: int | None) -> str | None:
    if not count:
        return None
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def details(model: ModelInfo) -> dict[str, Any]:
    family = model.details.get("architecture")
    fields = {
        "format": model.details.get("format"),
        "family": family,
        "families": [family] if family else None,
        "parameter_size": _parameter_size(model.details.get("parameters")),
        "quantization_level": model.details.get("quantization"),
    }
    return {key: value for key, value in fields.items() if value}


def _modified_at(model: ModelInfo) -> str | None:
    modified = model.details.get("modified_at")
    return rfc3339(float(modified)) if isinstance(modified, int | float) else None


def model_entry(model: ModelInfo) -> dict[str, Any]:
    entry = {
        "name": tagged(model.id),
        "model": tagged(model.id),
        "modified_at": _modified_at(model),
        "size": model.details.get("size"),
        "details": details(model),
    }
    return {key: value for key, value in entry.items() if value is not None}


def tags(models: list[ModelInfo]) -> dict[str, Any]:
    return {"models": [model_entry(model) for model in models]}


#: /api/ps's expires_at for a model that stays loaded: velesio's workers never unload theirs, and
#: Ollama, told keep_alive -1, answers a time this far off.
NEVER_EXPIRES = "2318-01-01T00:00:00Z"


def running(models: list[ModelInfo]) -> dict[str, Any]:
    """/api/ps. size_vram is 0: llama-server does not say how much of the model is on a GPU."""
    return {
        "models": [
            {
                **{key: value for key, value in model_entry(model).items() if key != "modified_at"},
                "expires_at": NEVER_EXPIRES,
                "size_vram": 0,
                "context_length": model.n_ctx,
            }
            for model in models
        ]
    }


def _parameters(model: ModelInfo) -> str:
    """Ollama's Modelfile PARAMETER lines for what the model runs with."""
    lines = [f"num_ctx {model.n_ctx}"] if model.n_ctx else []
    eos = model.props.get("eos_token")
    if isinstance(eos, str) and eos:
        lines.append(f"stop {orjson.dumps(eos).decode()}")
    return "\n".join(f"{name:<30} {value}" for name, value in (line.split(" ", 1) for line in lines))


def show(model: ModelInfo) -> dict[str, Any]:
    architecture = model.details.get("architecture") or "unknown"
    info = {
        "general.architecture": architecture,
        "general.name": model.general_name,
        "general.parameter_count": model.details.get("parameters"),
        f"{architecture}.context_length": model.details.get("context_length") or model.n_ctx,
        f"{architecture}.embedding_length": model.details.get("embedding_length"),
    }
    shown = {
        "modelfile": "",
        "parameters": _parameters(model),
        "template": model.chat_template or "",
        "details": details(model),
        "model_info": {key: value for key, value in info.items() if value is not None},
        "capabilities": capabilities(model),
        "modified_at": _modified_at(model),
    }
    return {key: value for key, value in shown.items() if value is not None}


def embed_response(result: dict[str, Any], *, model: str, started: Instant, now: Instant) -> dict[str, Any]:
    answer = {"model": model, "embeddings": result["embeddings"], "total_duration": _nanoseconds(started, now)}
    if result.get("prompt_tokens"):
        answer["prompt_eval_count"] = int(result["prompt_tokens"])
    return answer


def legacy_embedding(result: dict[str, Any]) -> dict[str, Any]:
    vectors = result["embeddings"]
    return {"embedding": vectors[0] if vectors else []}
