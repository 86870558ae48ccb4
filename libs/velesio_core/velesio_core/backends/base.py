"""The contract between velesio's job dispatcher and an LLM backend.

Requests and answers use llama.cpp's native vocabulary (see jobs.py); a backend that is not
llama-server translates. Every call names the model that must run it (a backend may serve
several). Calls are synchronous: each job runs on a worker thread of its own, and every call takes
the job's Cancellation, which must interrupt it promptly (closing a connection is the usual way).
Failures are raised as GatewayError, with the kind the client should see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..cancellation import Cancellation
from ..events import Event

#: A health check answers within this, or counts as a failure.
HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ModelInfo:
    """What a worker tells the API about the model it serves."""

    id: str
    n_ctx: int
    slots: int
    chat_template: str | None = None
    #: The model's own name (GGUF general.name), which LLM for Unity matches templates on.
    general_name: str | None = None
    path: str | None = None
    embeddings: bool = False
    #: llama.cpp's GET /props body, answered from here without a round trip to the worker.
    props: dict[str, Any] = field(default_factory=dict)
    #: What model lists show: size (bytes), parameters, family, quantization, format, digest.
    details: dict[str, Any] = field(default_factory=dict)
    #: llama-server's own /v1/models entry beyond OpenAI's fields (aliases, tags, architecture,
    #: meta), which OpenAI's model list passes on as llama-server does.
    listing: dict[str, Any] = field(default_factory=dict)


class LlmBackend(Protocol):
    def complete(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        """Generate: token events (only when ``stream``), then one result event.

        The events come in lists, each written to the job's stream in one call: a list holds an
        event as soon as the backend has it, and those it already had behind it, never one that
        has yet to arrive (one event per list is always right).

        The result is llama.cpp's final /completion object; when not streaming it carries the
        whole text in ``content``, when streaming ``content`` is empty (the tokens had it).
        """
        ...

    def chat(
        self, request: dict[str, Any], *, model: str, stream: bool, cancellation: Cancellation
    ) -> Iterator[list[Event]]:
        """Like ``complete``, for an OpenAI-style chat body: the model's own chat template renders
        the messages. Token events may carry reasoning_content and tool_calls deltas."""
        ...

    def tokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any: ...

    def detokenize(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any: ...

    def apply_template(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any: ...

    def embeddings(self, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        """``{"embeddings": [[float], ...], "prompt_tokens": int}`` for the request's ``content``
        (or ``input``): a string or a list of them."""
        ...

    def slots(self, *, model: str, cancellation: Cancellation) -> Any: ...

    def endpoint(self, path: str, request: dict[str, Any], *, model: str, cancellation: Cancellation) -> Any:
        """llama-server's answer to ``request`` POSTed to ``path`` (one of LLAMA_ENDPOINTS), as it is."""
        ...

    def models(self) -> list[ModelInfo]:
        """The models this backend serves; the first one is its default."""
        ...

    def healthy(self) -> bool:
        """Whether the backend answers its health check now, within a couple of seconds."""
        ...

    def close(self) -> None: ...
