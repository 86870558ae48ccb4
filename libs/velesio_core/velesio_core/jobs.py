"""The internal job envelope: what the API puts on a queue and a worker runs.

Dialects differ only at the edges. Whatever a client spoke, its request becomes one
:class:`Job` whose ``payload`` uses llama.cpp's native vocabulary (the richest of the dialects
velesio speaks): a completion payload is a llama.cpp ``/completion`` body, a tokenize payload a
``/tokenize`` body, and so on. Backends that are not llama-server translate from it.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobKind(StrEnum):
    COMPLETION = "completion"
    TOKENIZE = "tokenize"
    DETOKENIZE = "detokenize"
    APPLY_TEMPLATE = "apply_template"
    EMBEDDINGS = "embeddings"
    SLOTS = "slots"

    @property
    def holds_generation_slot(self) -> bool:
        """Whether the job occupies one of llama-server's generation slots while it runs."""
        return self is JobKind.COMPLETION


class Queue(StrEnum):
    """Dramatiq queue names. ``llm`` jobs hold a generation slot; ``llm_aux`` jobs do not, so a
    tokenize call never waits behind long generations."""

    LLM = "llm"
    LLM_AUX = "llm_aux"

    @classmethod
    def for_kind(cls, kind: JobKind) -> Queue:
        return cls.LLM if kind.holds_generation_slot else cls.LLM_AUX


def new_job_id() -> str:
    return uuid.uuid4().hex


class Job(BaseModel):
    """One unit of work, from the API to a worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_job_id, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    kind: JobKind
    payload: dict[str, Any] = Field(description="The kind's request, in llama.cpp's native vocabulary.")
    stream: bool = Field(False, description="Whether the client wants partial (token) events.")
    model: str | None = Field(None, description="The model the client asked for; None for the default.")
    enqueued_at: float = Field(default_factory=time.time, description="Unix time the API queued the job.")
    deadline: float = Field(description="Unix time after which a job that has not started is dropped.")
    timeout_s: float = Field(gt=0, description="How long the job may run once started, in seconds.")

    @property
    def queue(self) -> Queue:
        return Queue.for_kind(self.kind)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) > self.deadline

    @classmethod
    def create(
        cls,
        kind: JobKind,
        payload: dict[str, Any],
        *,
        stream: bool = False,
        model: str | None = None,
        deadline_s: float,
        timeout_s: float,
    ) -> Job:
        now = time.time()
        return cls(
            kind=kind,
            payload=payload,
            stream=stream,
            model=model,
            enqueued_at=now,
            deadline=now + deadline_s,
            timeout_s=timeout_s,
        )
