"""What a model can do, in Ollama's words (/api/show's ``capabilities``), read from llama-server's
/props: its modalities and what its chat template supports."""

from __future__ import annotations

from typing import Any

from ...backends.base import ModelInfo

#: Text in a chat template that only templates of reasoning models have: Jinja ones (llama-server's)
#: and Go ones (an Ollama server's, behind an Ollama-backed worker).
_THINKING_MARKERS = (
    *("<think>", "enable_thinking", "reasoning_content", "<|channel|>analysis"),
    *(".Thinking", "IsThinkSet"),
)


def _caps(model: ModelInfo) -> dict[str, Any]:
    caps = model.props.get("chat_template_caps")
    return caps if isinstance(caps, dict) else {}


def vision(model: ModelInfo) -> bool:
    modalities = model.props.get("modalities")
    return isinstance(modalities, dict) and bool(modalities.get("vision"))


def thinking(model: ModelInfo) -> bool:
    template = model.chat_template or ""
    return bool(_caps(model).get("supports_reasoning_effort")) or any(m in template for m in _THINKING_MARKERS)


def capabilities(model: ModelInfo) -> list[str]:
    found = {
        "completion": True,
        "tools": bool(_caps(model).get("supports_tools")),
        "embedding": model.embeddings,
        "vision": vision(model),
        "thinking": thinking(model),
    }
    return [name for name, has in found.items() if has]
