"""What a custom backend is: the classes a plugin writes, and what velesio hands them.

A backend serves one or more models (:meth:`TextBackend.models`) and declares its
:class:`Capability` set; a job of a kind outside it is answered by the worker with a 501 in the
client's own dialect, and a job of a kind inside it is handed to the matching method:

| Capability | method | jobs (dialects and routes) |
|---|---|---|
| `COMPLETION` | `Generates.generate` | llama.cpp's `/completion`, OpenAI's `/v1/completions`, Ollama's `/api/generate`|
| `CHAT` | `Generates.generate` | OpenAI's `/v1/chat/completions`, Ollama's `/api/chat`, llama.cpp's `/apply-template` |
| `EMBEDDINGS` | `Embeds.embed` | `/embeddings`, `/v1/embeddings`, Ollama's `/api/embed` |
| `TOKENIZE` | `Tokenizes.tokenize`, `.detokenize` | llama.cpp's `/tokenize` and `/detokenize` |

Calls are synchronous and run on a worker thread of their own, one per job, as many at once as
the worker's LLAMA_SLOTS: a backend that is not thread-safe takes a lock. Every call may raise
:class:`~velesio_core.errors.GatewayError` with the kind the client should see (a 400 for a
request it cannot honour); any other exception is logged by the worker and answered with a 500.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from ..backends.base import ModelInfo
from ..cancellation import Cancellation, JobCancelled
from ..events import Event, EventType
from ..results import ImageProgressData

__all__ = [
    "Capability",
    "Embeds",
    "Generates",
    "GenerationRequest",
    "JobContext",
    "ModelInfo",
    "TextBackend",
    "Tokenizes",
]


class Capability(StrEnum):
    """A kind of job a backend can run (see the table above)."""

    COMPLETION = "completion"
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    TOKENIZE = "tokenize"


@dataclass(frozen=True)
class GenerationRequest:
    """A completion or a chat turn to generate.

    ``prompt`` is always set: a completion's prompt, or a chat's ``messages`` rendered as plain
    text (``"user: Hi\\nassistant:"``) for a backend with no chat template of its own; such a
    backend may read ``messages`` instead.
    """

    #: The model the job names (one of :meth:`TextBackend.models`).
    model: str
    prompt: str
    #: The chat's messages, OpenAI's shape; None for a completion.
    messages: list[dict[str, Any]] | None
    #: The most pieces to generate; None: the backend's own limit. velesio stops the generation
    #: there too, so a backend may ignore it.
    max_tokens: int | None
    temperature: float | None
    #: A seed for a reproducible answer; None: the backend's choice.
    seed: int | None
    #: Strings that end the generation; velesio cuts the text at the first one, so a backend
    #: may ignore them.
    stop: tuple[str, ...]
    #: The job's whole payload (llama.cpp's vocabulary), for any other option.
    payload: Mapping[str, Any] = field(default_factory=dict)


class JobContext:
    """What a running job offers its backend: its cancellation, and a way to report progress."""

    def __init__(self, cancellation: Cancellation, emit: Callable[[Event], None] | None = None) -> None:
        self._cancellation = cancellation
        self._emit = emit
        self._started_at = time.time()

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (its client left, it ran out of time, the worker stops)."""
        return self._cancellation.cancelled

    def check(self) -> None:
        """Raise if the job was cancelled: call it between steps of long work. (velesio calls it
        between generated pieces itself.)"""
        if self._cancellation.reason is not None:
            raise JobCancelled(self._cancellation.reason)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) the moment the job is cancelled, to unblock
        whatever the backend waits on (close a socket, set an event). Returns an unregister."""
        return self._cancellation.on_cancel(callback)

    def progress(self, step: int, steps: int) -> None:
        """Report step ``step`` (1-based) of ``steps`` of a long generation: the Python client
        sees a :class:`~velesio_core.client.Progress` event; HTTP dialects show none."""
        if self._emit is not None:
            data: ImageProgressData = {
                "step": step, "steps": steps, "job_no": 0, "job_count": 1, "started_at": self._started_at,
            }  # fmt: skip
            self._emit(Event.of(EventType.PROGRESS, data))


class TextBackend(Protocol):
    """What every custom backend has. Add the protocols of its capabilities (:class:`Generates`,
    :class:`Embeds`, :class:`Tokenizes`).

    velesio makes it with no arguments (a class, or any callable that returns a backend): it
    reads its own configuration (environment variables, files) and loads its models there.
    """

    #: The kinds of job it runs.
    capabilities: frozenset[Capability]

    def models(self) -> Sequence[ModelInfo]:
        """The models it serves, the default one first: their ids are what clients name."""
        ...

    def close(self) -> None:
        """Release what it holds; called once when the worker stops."""
        ...


@runtime_checkable
class Generates(Protocol):
    def generate(self, request: GenerationRequest, context: JobContext) -> Iterable[str]:
        """Yield the generated text piece by piece (a token, a word); stop at the end.

        Each piece counts as one token (``max_tokens``, ``tokens_predicted``); velesio streams
        each piece as it comes, and stops pulling when the client leaves or a limit is reached.
        """
        ...


@runtime_checkable
class Embeds(Protocol):
    def embed(self, texts: list[str], *, model: str, context: JobContext) -> list[list[float]]:
        """One vector per text, in order."""
        ...


@runtime_checkable
class Tokenizes(Protocol):
    def tokenize(self, text: str, *, model: str) -> list[int]: ...

    def detokenize(self, tokens: list[int], *, model: str) -> str: ...


#: The protocol each capability's backend must implement.
REQUIRED: dict[Capability, type] = {
    Capability.COMPLETION: Generates,
    Capability.CHAT: Generates,
    Capability.EMBEDDINGS: Embeds,
    Capability.TOKENIZE: Tokenizes,
}
