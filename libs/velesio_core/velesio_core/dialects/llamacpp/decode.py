"""llama.cpp requests as velesio job payloads: llama.cpp's vocabulary is the jobs' own, so a
request travels as the client sent it, unknown fields included (llama-server ignores them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

#: Fields that steer velesio itself (whether to stream the answer) and do not travel to a backend.
_OWN = frozenset({"stream"})


def forwarded(request: BaseModel) -> dict[str, Any]:
    """A job's payload: the fields the client set, unknown ones included, less velesio's own."""
    return request.model_dump(exclude_unset=True, exclude_none=True, exclude=set(_OWN))


def model_name(body: object) -> str | None:
    """The model a request names, if any: llama.cpp's clients seldom name one; llama-server's
    router mode reads it when they do."""
    name = body.get("model") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def speaks_llmunity_v2(body: object) -> bool:
    """Both LLM for Unity generations POST ``{"content": ...}`` for embeddings; only v3 (LlamaLib)
    adds ``stream``, and the two read different answers (see encode.embeddings)."""
    return not (isinstance(body, dict) and "stream" in body)


def prompts(prompt: object) -> list[Any]:
    """The prompts of a /completion body, as llama-server reads it: a string, a multimodal object,
    token ids or a mix of ids and strings are one prompt; any other list is several."""
    if not isinstance(prompt, list):
        return [prompt]
    one = all(isinstance(part, int | str) for part in prompt) and any(isinstance(part, int) for part in prompt)
    return [prompt] if one else list(prompt)
