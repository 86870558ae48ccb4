"""Encode velesio's events and answers the way llama.cpp's server writes them.

Streams follow what LLM for Unity parses (docs/clients.md, LLM for Unity: Streams): every event is exactly
``data: <json>\\n\\n`` and is sent as one write of its own; there are no comments, no keep-alives
and no ``data: [DONE]`` (which breaks LLM for Unity v2's parser); the final chunk has
``"content": ""`` because the partial chunks already carried the text.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

import orjson

from ...backends.base import ModelInfo
from ...errors import GatewayError, unavailable
from ...events import Event, EventType
from .templates import template_name


def sse_event(event: Event) -> bytes | None:
    """One SSE event for a token, result or error event; None for events clients never see."""
    if event.type is EventType.TOKEN or event.type is EventType.RESULT:
        return b"data: " + event.data + b"\n\n"
    if event.type is EventType.ERROR:
        return b"data: " + orjson.dumps({"error": event.value()}) + b"\n\n"
    return None


class SseStream:
    """llama.cpp's stream encoder: stateless, one SSE event per event the client sees."""

    #: LlamaLib parses each HTTP chunk alone: the relay never joins two events in one write.
    one_event_per_write: Literal[True] = True

    def encode(self, event: Event) -> list[bytes]:
        chunk = sse_event(event)
        return [chunk] if chunk is not None else []


def error_body(error: GatewayError) -> bytes:
    # llama.cpp's "code" is always the status; OpenAI's string codes (model_not_found) are not its.
    return orjson.dumps({"error": {**error.to_event_data(), "code": error.status}})


def embeddings(result: dict[str, Any], *, llmunity_v2: bool) -> Any:
    """llama.cpp answers embeddings with an array of pooled vectors, each nested in a list, which
    LLM for Unity v3 (LlamaLib) reads as ``result[0].embedding``.

    LLM for Unity v2 parses the body with Unity's JsonUtility, which cannot read a top-level
    array: it gets ``{"embedding": [float]}``, the first input's vector.
    """
    vectors = result["embeddings"]
    if llmunity_v2:
        return {"embedding": vectors[0] if vectors else []}
    return [{"index": index, "embedding": [vector]} for index, vector in enumerate(vectors)]


def template(model: ModelInfo) -> dict[str, str]:
    names = [model.general_name, model.id, PurePath(model.path).stem if model.path else None]
    return {"template": template_name(model.chat_template, names)}


def props(model: ModelInfo) -> dict[str, Any]:
    return model.props or {"default_generation_settings": {"n_ctx": model.n_ctx}, "total_slots": model.slots}


def slots(states: list[dict[str, Any]], *, fail_on_no_slot: bool) -> list[dict[str, Any]]:
    """GET /slots: llama-server's slots; with ``?fail_on_no_slot``, a 503 when every one is busy."""
    if fail_on_no_slot and all(slot.get("is_processing") for slot in states):
        raise unavailable("no slot is available")
    return states
