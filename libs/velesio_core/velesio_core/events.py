"""The events a running job sends back to the API, in order.

    queued             the API queued the job (the stream's  {}
                       first entry; readers start after it)
    started            a worker took the job, and has not    results.StartedData
                       said anything else for 50 ms
    token ...          a piece of generated text (streaming) results.TokenPiece (llama.cpp's
                                                             partial chunk)
    progress ...       a step of a long job (images)         results.ImageProgressData
    result | error     the end, exactly one of them          result: the kind's final answer;
                                                             error: {"code", "message", "type"}

results.py holds the vocabulary of the data. Generation results (completion and chat) use
llama.cpp's final-chunk vocabulary, whichever backend ran them, so that every dialect can encode
them (results.GenerationResult: content, stop_type, tokens_predicted, tokens_evaluated, timings,
and reasoning_content and tool_calls when the model produced them). An embeddings result is a
results.EmbeddingsResult, one pooled vector per input; an image result (txt2img, img2img) a
results.ImageResult, whose ``timings.steps`` counts the denoising steps run over every batch. A
chat token event may carry ``reasoning_content`` and ``tool_calls`` deltas (OpenAI's shape)
instead of, or beside, ``content``.

Event data stays as the JSON bytes the worker wrote. The llama.cpp dialect forwards a token
event without parsing it at all; other dialects parse what they need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, overload

import orjson

from .errors import ErrorKind, GatewayError
from .results import ImageProgressData, JobResult, StartedData, TokenPiece


class EventType(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    TOKEN = "token"
    PROGRESS = "progress"
    RESULT = "result"
    ERROR = "error"

    @property
    def is_final(self) -> bool:
        return self in (EventType.RESULT, EventType.ERROR)


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    data: bytes

    # Each type of event carries its own data (see the module's docstring), and every producer
    # names the type where it makes the event, so the checker can hold it to that data.
    @overload
    @classmethod
    def of(cls, type: Literal[EventType.STARTED], value: StartedData) -> Event: ...
    @overload
    @classmethod
    def of(cls, type: Literal[EventType.TOKEN], value: TokenPiece) -> Event: ...
    @overload
    @classmethod
    def of(cls, type: Literal[EventType.PROGRESS], value: ImageProgressData) -> Event: ...
    @overload
    @classmethod
    def of(cls, type: Literal[EventType.RESULT], value: JobResult) -> Event: ...
    @overload
    @classmethod
    def of(cls, type: Literal[EventType.ERROR], value: dict[str, Any]) -> Event: ...
    @classmethod
    def of(cls, type: EventType, value: object) -> Event:
        return cls(type, orjson.dumps(value))

    @classmethod
    def error(cls, error: GatewayError) -> Event:
        return cls.of(EventType.ERROR, error.to_event_data())

    def value(self) -> Any:
        return orjson.loads(self.data)

    def as_error(self) -> GatewayError:
        return GatewayError.from_event_data(self.value())


async def final_result(events: AsyncIterator[Event]) -> Event:
    """Wait for the end of a job and return its result event; raise its error as a GatewayError.

    This is the non-streaming path: the same events as a stream, collected, then encoded once.
    """
    async for event in events:
        if event.type is EventType.RESULT:
            return event
        if event.type is EventType.ERROR:
            raise event.as_error()
    raise GatewayError(ErrorKind.SERVER, "the job ended without a result")
