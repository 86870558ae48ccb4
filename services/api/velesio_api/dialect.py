"""Which dialect a request speaks, told by its path: errors are rendered and metrics labelled by it."""

from __future__ import annotations

#: (path prefix, dialect), first match wins: more specific prefixes first.
DIALECT_PREFIXES: list[tuple[str, str]] = [
    ("/v1/", "openai"),
    ("/api/", "ollama"),
]
#: llama.cpp's native API (and LLM for Unity's) owns every other path.
DEFAULT_DIALECT = "llamacpp"


def dialect_of(path: str) -> str:
    for prefix, dialect in DIALECT_PREFIXES:
        if path.startswith(prefix):
            return dialect
    return DEFAULT_DIALECT
