"""What each scope lets a key do, told by the job it queues or, for requests that queue none, the path.

Jobs decide first: every route that runs anything on a worker makes a :class:`~velesio_core.jobs.Job`,
so a job kind's scope holds whatever route a dialect adds. The path table covers what answers
without a job (model info, templates, options, metrics, the admin surface).
"""

from __future__ import annotations

from enum import StrEnum

from ..jobs import JobKind


class Scope(StrEnum):
    #: Generation, chat, tokenize, templates, props, and the agent dialects.
    LLM = "llm"
    EMBEDDINGS = "embeddings"
    IMAGES = "images"
    #: ``GET /metrics``.
    METRICS = "metrics"
    #: Create child keys within the key's own scopes, models, limits and lifetime.
    MINT = "mint"
    #: Everything under /admin, and every other scope.
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
#: What a minted key may never hold: it cannot mint again nor administer.
NOT_MINTABLE = frozenset({Scope.MINT, Scope.ADMIN})

_JOB_SCOPES: dict[JobKind, Scope] = {
    JobKind.COMPLETION: Scope.LLM,
    JobKind.CHAT: Scope.LLM,
    JobKind.TOKENIZE: Scope.LLM,
    JobKind.DETOKENIZE: Scope.LLM,
    JobKind.APPLY_TEMPLATE: Scope.LLM,
    JobKind.SLOTS: Scope.LLM,
    JobKind.EMBEDDINGS: Scope.EMBEDDINGS,
    JobKind.TXT2IMG: Scope.IMAGES,
    JobKind.IMG2IMG: Scope.IMAGES,
    JobKind.SD_OPTIONS: Scope.IMAGES,
}

#: (path prefix, scope), first match wins. None: any valid key (lists of models, liveness).
_PATH_SCOPES: tuple[tuple[str, Scope | None], ...] = (
    ("/admin/", None),  # the admin routes check admin or mint themselves
    ("/metrics", Scope.METRICS),
    ("/v1/embeddings", Scope.EMBEDDINGS),
    ("/embedding", Scope.EMBEDDINGS),  # /embedding and /embeddings
    ("/api/embed", Scope.EMBEDDINGS),  # /api/embed and /api/embeddings
    ("/v1/images/", Scope.IMAGES),
    ("/sdapi/", Scope.IMAGES),
    ("/api/sd-models", Scope.IMAGES),
    ("/api/options", Scope.IMAGES),
    ("/internal/progress", Scope.IMAGES),
    ("/v1/models", None),
    ("/models", None),
    ("/api/tags", None),
    ("/api/version", None),
    ("/api/ps", None),
    ("/health", None),
    ("/v1/health", None),
)


def scope_of_job(kind: JobKind) -> Scope:
    return _JOB_SCOPES[kind]


def scope_of_path(path: str) -> Scope | None:
    """The scope a request to ``path`` needs before any job is made; None when any key will do."""
    if path in ("/", "/admin"):
        return None
    for prefix, scope in _PATH_SCOPES:
        if path.startswith(prefix):
            return scope
    # llama.cpp's native API, OpenAI's chat/completions/responses, Ollama's and Anthropic's.
    return Scope.LLM
