"""What a :class:`~velesio_core.client.Client` returns: a typed result per kind of job, and the
events of a stream.

Each result keeps the data velesio's workers sent, as the TypedDict of
:mod:`velesio_core.results` (``raw``), beside the fields most callers want.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..results import GenerationResult, ImageResult, StopType, Timings, ToolCall, ToolCallDelta

__all__ = [
    "ChatCompletion",
    "Completion",
    "Done",
    "Embeddings",
    "Images",
    "Progress",
    "Started",
    "StreamEvent",
    "Token",
    "Tokens",
]


@dataclass(frozen=True)
class Completion:
    """A finished text generation."""

    #: The model that ran it.
    model: str
    #: The whole generated text (a stream's tokens, joined).
    text: str
    #: Why it stopped: ``eos`` (the model ended), ``word`` (a stop word), ``limit`` (max_tokens).
    stop_type: StopType
    tokens_predicted: int
    tokens_evaluated: int
    timings: Timings
    #: The worker's result event as it came (llama.cpp's final chunk).
    raw: GenerationResult


@dataclass(frozen=True)
class ChatCompletion(Completion):
    """A finished chat turn: the assistant's text, and its reasoning and tool calls if any."""

    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class Embeddings:
    model: str
    #: One pooled vector per input, in the order of the inputs.
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class Tokens:
    model: str
    #: The token ids of the text, as the model's tokenizer splits it.
    ids: list[int]


@dataclass(frozen=True)
class Images:
    """Pictures from txt2img or img2img, with the seed each one used."""

    #: PNG files, each carrying its AUTOMATIC1111 ``parameters`` text.
    png: list[bytes]
    seeds: list[int]
    infotexts: list[str]
    #: The worker's result, in AUTOMATIC1111's words (its ``info``).
    raw: ImageResult

    @classmethod
    def from_result(cls, result: ImageResult) -> Images:
        return cls(
            png=[base64.b64decode(image) for image in result["images"]],
            seeds=list(result["seeds"]),
            infotexts=list(result["infotexts"]),
            raw=result,
        )


@dataclass(frozen=True)
class Started:
    """A worker took the job (sent only when its first output takes a while)."""

    worker: str


@dataclass(frozen=True)
class Token:
    """A piece of generated text. A chat's piece may carry reasoning or tool-call fragments instead."""

    text: str
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


@dataclass(frozen=True)
class Progress:
    """A step of a long job (an image's denoising steps): ``step`` of ``steps``, 1-based."""

    step: int
    steps: int
    #: For a job in batches (A1111's ``n_iter``): the batch, 0-based, of ``job_count``.
    job_no: int = 0
    job_count: int = 1


R = TypeVar("R")


@dataclass(frozen=True)
class Done(Generic[R]):
    """The last event of a stream: the job's whole result (a Completion, a ChatCompletion, Images)."""

    result: R


#: What a stream yields: zero or more Started, Token and Progress events, then exactly one Done.
StreamEvent = Started | Token | Progress | Done[Any]
