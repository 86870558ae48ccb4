"""OpenAI requests as velesio job payloads (llama.cpp's vocabulary)."""

from __future__ import annotations

from typing import Any

from ...errors import not_supported
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest

# Fields that steer velesio itself and do not travel to a backend.
_OWN = {"model", "stream", "stream_options", "n", "user"}


def _one_choice(n: int | None) -> None:
    if n is not None and n > 1:
        raise not_supported("n > 1 is not supported; send n requests")


def chat_payload(request: ChatCompletionRequest) -> dict[str, Any]:
    """A chat job's payload: OpenAI's chat body as llama-server's /v1/chat/completions takes it."""
    _one_choice(request.n)
    if request.logprobs or request.top_logprobs:
        raise not_supported("logprobs are not supported")
    payload = request.model_dump(exclude_unset=True, exclude_none=True, exclude=_OWN)
    if "max_completion_tokens" in payload:
        payload["max_tokens"] = payload.pop("max_completion_tokens")
    return payload


def completion_payload(request: CompletionRequest) -> dict[str, Any]:
    """A completion job's payload: a llama.cpp /completion body."""
    _one_choice(request.n)
    if request.echo:
        raise not_supported("echo is not supported")
    if request.suffix:
        raise not_supported("suffix (fill-in-the-middle) is not supported")
    if request.best_of is not None and request.best_of > 1:
        raise not_supported("best_of > 1 is not supported")
    if request.logprobs:
        raise not_supported("logprobs are not supported")
    payload = request.model_dump(exclude_unset=True, exclude_none=True, exclude=_OWN | {"echo", "suffix", "best_of"})
    prompt = payload.pop("prompt")
    payload["prompt"] = prompt[0] if isinstance(prompt, list) and isinstance(prompt[0], str) else prompt
    if "max_tokens" in payload:
        payload["n_predict"] = payload.pop("max_tokens")
    if isinstance(payload.get("stop"), str):
        payload["stop"] = [payload["stop"]]
    payload.pop("logprobs", None)
    return payload


def embeddings_payload(request: EmbeddingsRequest) -> dict[str, Any]:
    if request.dimensions is not None:
        raise not_supported("dimensions is not supported: the model's embeddings have a fixed size")
    return {"input": request.input}
