"""Which dialect a request speaks, told by its path: errors are rendered and metrics labelled by it."""

from __future__ import annotations

#: (path prefix, dialect), first match wins: more specific prefixes first.
DIALECT_PREFIXES: list[tuple[str, str]] = [
    ("/v1/messages", "anthropic"),
    ("/v1/", "openai"),
    # AUTOMATIC1111's. The two /api/ ones are the Unity SD client's fallbacks: they must come
    # before Ollama's, which claims the rest of /api/.
    ("/sdapi/", "a1111"),
    ("/api/sd-models", "a1111"),
    ("/api/options", "a1111"),
    ("/internal/progress", "a1111"),
    ("/api/", "ollama"),
]
#: llama.cpp's native API (and LLM for Unity's) owns every other path.
DEFAULT_DIALECT = "llamacpp"


def dialect_of(path: str) -> str:
    for prefix, dialect in DIALECT_PREFIXES:
        if path.startswith(prefix):
            return dialect
    return DEFAULT_DIALECT
