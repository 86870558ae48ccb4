"""The internal job envelope: what the API puts on a queue and a worker runs.

Dialects differ only at the edges. Whatever a client spoke, its request becomes one
:class:`Job` whose ``payload`` uses the richest vocabulary of its kind among the dialects velesio
speaks: text jobs use llama.cpp's (a completion payload is a llama.cpp ``/completion`` body, a chat
payload an OpenAI-style ``/v1/chat/completions`` body as llama-server takes it, llama.cpp's sampling
options included, a tokenize payload a ``/tokenize`` body, and so on), image jobs AUTOMATIC1111's (a
txt2img payload is a validated ``/sdapi/v1/txt2img`` body). Backends translate from it.

Every job names the model it wants; a worker consumes the queues of the models it serves, so a
job only ever reaches a worker that can run it. Image jobs all name :data:`IMAGE_MODEL`: every
image worker can load any checkpoint, so the checkpoint is an option of the job (its payload's
``sd_model_checkpoint``), as it is of an A1111 request.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


# What each kind's result event carries (results.py): a GenerationResult for a completion or a
# chat, an EmbeddingsResult, an ImageResult for txt2img and img2img, an SdOptionsResult; tokenize,
# detokenize, apply_template and slots answer with llama-server's own JSON. (A comment, not the
# docstring: pydantic would publish a docstring in the job's JSON Schema.)
class JobKind(StrEnum):
    COMPLETION = "completion"
    CHAT = "chat"
    TOKENIZE = "tokenize"
    DETOKENIZE = "detokenize"
    APPLY_TEMPLATE = "apply_template"
    EMBEDDINGS = "embeddings"
    SLOTS = "slots"
    #: One of llama-server's own endpoints (/infill, /rerank, ...), its body and answer passed
    #: through as they are: velesio adds nothing but the queue.
    LLAMA_ENDPOINT = "llama_endpoint"
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    #: Load another checkpoint (or VAE) into a worker's image pipeline: a job of its own on the
    #: image queue, so that it never happens under another image job.
    SD_OPTIONS = "sd_options"

    @property
    def holds_generation_slot(self) -> bool:
        """Whether the job occupies one of llama-server's generation slots while it runs."""
        return self in (JobKind.COMPLETION, JobKind.CHAT)

    @property
    def is_image(self) -> bool:
        """Whether the job runs on an image (Stable Diffusion) pipeline."""
        return self in _IMAGE_KINDS

    @property
    def makes_images(self) -> bool:
        """Whether the job's result is images (a checkpoint switch runs on the pipeline but makes none)."""
        return self in (JobKind.TXT2IMG, JobKind.IMG2IMG)


_IMAGE_KINDS = frozenset({JobKind.TXT2IMG, JobKind.IMG2IMG, JobKind.SD_OPTIONS})

#: The model every image job names and every image worker serves (see the module's docstring).
IMAGE_MODEL = "stable-diffusion"


class Queue(StrEnum):
    """Kinds of Dramatiq queue. ``llm`` jobs hold a generation slot; ``llm_aux`` jobs do not, so a
    tokenize call never waits behind long generations. Each model has one queue of each kind it
    serves: an LLM the two text kinds, the image pipeline (:data:`IMAGE_MODEL`) ``sd``, whose jobs
    run one at a time per pipeline, whatever the LLM side does."""

    LLM = "llm"
    LLM_AUX = "llm_aux"
    SD = "sd"

    @classmethod
    def for_kind(cls, kind: JobKind) -> Queue:
        if kind.is_image:
            return cls.SD
        return cls.LLM if kind.holds_generation_slot else cls.LLM_AUX

    @classmethod
    def of_model(cls, model: str) -> tuple[Queue, ...]:
        """The kinds of queue ``model`` has: ``sd`` for the image pipeline, the text ones for an LLM."""
        return (cls.SD,) if model == IMAGE_MODEL else (cls.LLM, cls.LLM_AUX)

    def for_model(self, model: str) -> str:
        """The queue of this kind for ``model``, e.g. ``llm-qwen2.5_7b-3fa2c1``.

        Dramatiq allows ``[a-zA-Z0-9._-]`` in queue names; model names hold more (``qwen2.5:7b``),
        so they are slugged, and a hash of the exact name keeps two slugs apart.
        """
        slug = re.sub(r"[^a-zA-Z0-9_-]", "_", model)[:48]
        digest = hashlib.sha1(model.encode()).hexdigest()[:6]
        return f"{self.value}-{slug}-{digest}"


class JobTenant(BaseModel):
    """The API key a job was queued with: what a queue fair between keys orders jobs by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    weight: int = Field(ge=1)
    #: The top-level key: the key itself, or the key that minted it. Fairness is between
    #: top-level keys first, then between the keys one of them minted.
    top_id: str
    top_weight: int = Field(ge=1)


def new_job_id() -> str:
    return uuid.uuid4().hex


class Job(BaseModel):
    """One unit of work, from the API to a worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_job_id, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    kind: JobKind
    payload: dict[str, Any] = Field(
        description="The kind's request: llama.cpp's vocabulary for text, AUTOMATIC1111's for images."
    )
    stream: bool = Field(False, description="Whether the client wants partial (token) events.")
    model: str = Field(min_length=1, description="The model that must run the job (a name a worker serves).")
    enqueued_at: float = Field(default_factory=time.time, description="Unix time the API queued the job.")
    deadline: float = Field(description="Unix time after which a job that has not started is dropped.")
    timeout_s: float = Field(gt=0, description="How long the job may run once started, in seconds.")
    tenant: JobTenant | None = Field(default=None, description="The API key that queued it; None for API_TOKENS.")

    @property
    def queue(self) -> str:
        return Queue.for_kind(self.kind).for_model(self.model)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) > self.deadline

    @classmethod
    def create(
        cls,
        kind: JobKind,
        payload: dict[str, Any],
        *,
        model: str,
        stream: bool = False,
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
