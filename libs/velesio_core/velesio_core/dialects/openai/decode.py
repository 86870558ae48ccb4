"""OpenAI requests as velesio job payloads (llama.cpp's vocabulary)."""

from __future__ import annotations

from typing import Any

from ...errors import invalid_request, not_supported
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest

# Fields that steer velesio itself and do not travel to a backend.
_OWN = {"model", "stream", "stream_options", "n", "user"}


def chat_payload(request: ChatCompletionRequest) -> dict[str, Any]:
    """A chat job's payload: OpenAI's chat body as llama-server's /v1/chat/completions takes it.
    ``n`` choices are n jobs (see choices)."""
    if request.top_logprobs and not request.logprobs:
        raise invalid_request("top_logprobs needs logprobs: true")
    payload = request.model_dump(exclude_unset=True, exclude_none=True, exclude=_OWN)
    if "max_completion_tokens" in payload:
        payload["max_tokens"] = payload.pop("max_completion_tokens")
    return payload


def choices(request: ChatCompletionRequest | CompletionRequest) -> int:
    """How many jobs answer ``n``: one per choice, each on a slot of its own (llama-server, too,
    runs one task per choice); streamed, their chunks interleave, each with its choice's index."""
    return request.n or 1


def completion_payloads(request: CompletionRequest) -> list[dict[str, Any]]:
    """A completion job's payload per prompt (several prompts, several choices): llama.cpp
    /completion bodies."""
    if request.echo:
        raise not_supported("echo is not supported")
    if request.suffix:
        raise not_supported("suffix (fill-in-the-middle) is not supported here; POST /infill")
    if request.best_of is not None and request.best_of > 1:
        raise not_supported("best_of > 1 is not supported")
    payload = request.model_dump(exclude_unset=True, exclude_none=True, exclude=_OWN | {"echo", "suffix", "best_of"})
    prompt = payload.pop("prompt")
    if "max_tokens" in payload:
        payload["n_predict"] = payload.pop("max_tokens")
    if isinstance(payload.get("stop"), str):
        payload["stop"] = [payload["stop"]]
    # As llama-server reads it: logprobs is how many alternatives per token (n_probs) unless
    # n_probs itself is given.
    logprobs = payload.pop("logprobs", None)
    if logprobs is not None:
        payload.setdefault("n_probs", logprobs)
    # A list of texts or of token-id lists is several prompts; a list of ids is one.
    several = isinstance(prompt, list) and any(isinstance(part, str | list) for part in prompt)
    prompts = prompt if several else [prompt]
    return [{**payload, "prompt": one} for one in prompts]


def embeddings_payload(request: EmbeddingsRequest) -> dict[str, Any]:
    if request.dimensions is not None:
        raise not_supported("dimensions is not supported: the model's embeddings have a fixed size")
    return {"input": request.input}
