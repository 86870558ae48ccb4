"""OpenAI's answers: chat completions and their chunks, text completions, embeddings, models, errors.

Built from velesio's generation results (llama.cpp's vocabulary, see events.py): ``stop_type``
becomes ``finish_reason``, the token counts become ``usage``.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, TypedDict

import orjson

from ...backends.base import ModelInfo
from ...errors import ErrorKind, GatewayError
from ...events import Event, EventType

FINGERPRINT = "velesio"
_FINISH_REASONS = {"eos": "stop", "word": "stop", "limit": "length", "tool_calls": "tool_calls"}
_DONE = b"data: [DONE]\n\n"


class AnswerHead(TypedDict):
    """What every chunk and whole answer to one request repeats."""

    id: str
    model: str
    #: The answer's time, in seconds since the epoch.
    created: int


def finish_reason(result: dict[str, Any]) -> str:
    return _FINISH_REASONS.get(result.get("stop_type") or "eos", "stop")


def usage(result: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(result.get("tokens_evaluated") or 0), int(result.get("tokens_predicted") or 0)
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = (result.get("timings") or {}).get("cache_n")
    if isinstance(cached, int):
        # As llama-server and OpenAI report the prompt tokens read from the cache.
        counts["prompt_tokens_details"] = {"cached_tokens": cached}
    return counts


#: OpenAI's ``code`` for the kinds its clients tell apart by it.
_CODES = {
    ErrorKind.AUTHENTICATION: "invalid_api_key",
    ErrorKind.RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.QUOTA_EXCEEDED: "insufficient_quota",
}


def error_object(error: GatewayError) -> dict[str, Any]:
    code = error.extra.get("code") or _CODES.get(error.kind)
    return {"message": error.message, "type": error.kind.type_name, "param": error.extra.get("param"), "code": code}


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error_object(error)})


def model(model: ModelInfo, created: int) -> dict[str, Any]:
    """One model's entry; ``created`` is the answer's time (velesio does not know a model's age).
    llama-server's own fields (``meta``, ``aliases``, ...) come along where its worker said them."""
    return {"id": model.id, **model.listing, "object": "model", "created": created, "owned_by": "velesio"}


def model_list(models: list[ModelInfo], created: int) -> dict[str, Any]:
    return {"object": "list", "data": [model(each, created) for each in models]}


def llama_extras(result: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's own fields that llama-server adds to its OpenAI answers and clients read
    (LLM for Unity reads ``timings`` from the final chunk); none when the backend has none."""
    return {key: result[key] for key in ("timings", "prompt_progress") if result.get(key)}


def _sse(value: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


def chat_completion(result: dict[str, Any], *, id: str, model: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.get("content") or None}
    if result.get("reasoning_content"):
        message["reasoning_content"] = result["reasoning_content"]
    if result.get("tool_calls"):
        message["tool_calls"] = result["tool_calls"]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": result.get("logprobs"), "finish_reason": finish_reason(result)}
        ],
        "usage": usage(result),
        **llama_extras(result),
    }


def completion_logprobs(probabilities: list[Any] | None) -> dict[str, Any] | None:
    """A completion choice's ``logprobs`` as llama-server writes them: its per-token
    probabilities (the native ``completion_probabilities``) under ``content``, as in chat."""
    return {"content": probabilities} if probabilities else None


def text_completion(result: dict[str, Any], *, id: str, model: str, created: int) -> dict[str, Any]:
    choice = {
        "text": result.get("content") or "",
        "index": 0,
        "logprobs": completion_logprobs(result.get("completion_probabilities")),
        "finish_reason": finish_reason(result),
    }
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [choice],
        "usage": usage(result),
        **llama_extras(result),
    }


def summed_usage(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """Several choices' usage as OpenAI counts it: the prompt once, every choice's completion."""
    prompt = usages[0]["prompt_tokens"]
    completion = sum(one["completion_tokens"] for one in usages)
    return {**usages[0], "completion_tokens": completion, "total_tokens": prompt + completion}


def several_choices(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer whose choices are those of ``answers`` (one job's each), numbered in order, with
    their usage added up as OpenAI counts it."""
    merged = {
        **answers[0],
        "choices": [{**answer["choices"][0], "index": index} for index, answer in enumerate(answers)],
    }
    merged["usage"] = summed_usage([answer["usage"] for answer in answers])
    return merged


class _Chunks:
    """A stream of OpenAI chunks ending with ``data: [DONE]`` (and a usage chunk when asked).

    With ``choices`` > 1 the stream carries one job's events per choice, interleaved as they come
    (:meth:`encode_choice`), as llama-server streams ``n`` > 1: each choice ends with its own last
    chunk, and the stream with the usage of all and ``[DONE]`` once the last has ended.
    """

    object_name = ""
    #: Whether the last chunk with a choice carries ``usage`` too, whatever ``include_usage`` says.
    usage_in_last_choice = False

    def __init__(self, *, id: str, model: str, created: int, include_usage: bool, choices: int = 1) -> None:
        self._head = {
            "id": id,
            "object": self.object_name,
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        self._include_usage = include_usage
        self._choices = choices
        self._usages: list[dict[str, Any]] = []

    def _choice(self, index: int, piece: dict[str, Any], finish: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, event: Event) -> list[bytes]:
        return self.encode_choice(0, event)

    def encode_choice(self, index: int, event: Event) -> list[bytes]:
        if event.type is EventType.TOKEN:
            return [_sse({**self._head, "choices": [self._choice(index, event.value(), None)]})]
        if event.type is EventType.RESULT:
            result = event.value()
            choice = self._choice(index, {}, finish_reason(result))
            last = {**self._head, "choices": [choice], **llama_extras(result)}
            if self.usage_in_last_choice:
                last["usage"] = usage(result)
            self._usages.append(usage(result))
            chunks = [_sse(last)]
            if len(self._usages) < self._choices:
                return chunks
            if self._include_usage:
                chunks.append(_sse({**self._head, "choices": [], "usage": summed_usage(self._usages)}))
            return [*chunks, _DONE]
        if event.type is EventType.ERROR:
            # The SDKs raise an APIError for a chunk that carries "error".
            return [_sse({"error": error_object(event.as_error())})]
        return []


class ChatChunks(_Chunks):
    object_name = "chat.completion.chunk"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._role_sent: set[int] = set()

    def encode_choice(self, index: int, event: Event) -> list[bytes]:
        chunks = super().encode_choice(index, event)
        if index in self._role_sent or event.type not in (EventType.TOKEN, EventType.RESULT):
            return chunks
        self._role_sent.add(index)
        # A chunk of its own, before the first piece, as llama-server and OpenAI send it.
        role = {"index": index, "delta": {"role": "assistant", "content": None}, "logprobs": None}
        return [_sse({**self._head, "choices": [{**role, "finish_reason": None}]}), *chunks]

    def _choice(self, index: int, piece: dict[str, Any], finish: str | None) -> dict[str, Any]:
        delta = {key: piece[key] for key in ("content", "reasoning_content", "tool_calls") if piece.get(key)}
        return {"index": index, "delta": delta, "logprobs": piece.get("logprobs"), "finish_reason": finish}


class CompletionChunks(_Chunks):
    object_name = "text_completion"
    # llama-server's /v1/completions stream ends with its usage (its final answer is the same
    # object streamed or not); OpenAI's clients read the extra field as the Completion's usage.
    usage_in_last_choice = True

    def _choice(self, index: int, piece: dict[str, Any], finish: str | None) -> dict[str, Any]:
        logprobs = completion_logprobs(piece.get("completion_probabilities"))
        return {"text": piece.get("content", ""), "index": index, "logprobs": logprobs, "finish_reason": finish}


def embeddings(result: dict[str, Any], *, model: str, encoding_format: str | None) -> dict[str, Any]:
    def vector(values: list[float]) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        return values

    tokens = int(result.get("prompt_tokens") or 0)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": vector(values)}
            for index, values in enumerate(result["embeddings"])
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
