"""Carry a job from a request to the queue and its events back to the client.

The same path serves both kinds of answer: a stream sends each event as it arrives, a whole
answer waits for the final event. Either way, a client that disconnects cancels its job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any, Literal, Protocol, runtime_checkable

import falcon.asgi
import orjson

from velesio_core.backends.base import ModelInfo
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event, EventType, final_result
from velesio_core.jobs import Job, JobKind
from velesio_core.queue.interface import JobHandle, JobQueue
from velesio_core.registry import ModelDirectory, resolve_model
from velesio_core.settings import Settings
from velesio_core.validation import parse_json

from .disconnect import CONNECTION, ClientConnection

#: A streamed answer's header: how many jobs were to be served before its job when it was queued.
QUEUE_POSITION_HEADER = "X-Queue-Position"


class StreamEncoder(Protocol):
    """Writes one request's events in its dialect; it may keep state (ids, first-chunk flags)."""

    def encode(self, event: Event) -> Iterable[bytes]:
        """The chunks to send for ``event`` (none for events the client never sees). The chunks of
        the events that arrived together go out in one write, unless the stream is
        :class:`OneEventPerWrite`."""
        ...


@runtime_checkable
class OneEventPerWrite(StreamEncoder, Protocol):
    """A stream whose clients parse each HTTP chunk alone as one event (llama.cpp's, which
    LlamaLib reads so: docs/clients.md), so every chunk is a write of its own, never joined."""

    one_event_per_write: Literal[True]


class ChoicesEncoder(Protocol):
    """Writes the events of several jobs, one per choice, in one stream (OpenAI's ``n`` > 1)."""

    def encode_choice(self, index: int, event: Event) -> Iterable[bytes]: ...


class Cancellable(Protocol):
    async def cancel(self) -> None: ...


@runtime_checkable
class OpensEarly(StreamEncoder, Protocol):
    """A stream whose dialect opens it as soon as the job is queued and keeps it alive while the
    job waits (Anthropic's: ``message_start``, then a ``ping`` every :data:`KEEPALIVE_S`), so its
    clients, and the proxies between, see a live connection however long the queue. An error
    after that travels as the dialect's in-stream error event, as it does on the reference."""

    def opening(self) -> Iterable[bytes]: ...

    def keepalive(self) -> bytes: ...


#: Silence after which an early-opened stream sends its dialect's keepalive.
KEEPALIVE_S = 5.0


class Relay:
    def __init__(self, queue: JobQueue, models: ModelDirectory, settings: Settings) -> None:
        self.queue = queue
        self.models = models
        self.settings = settings

    async def model(self, name: str | None = None) -> ModelInfo:
        """The model a request names (or the default), 404 if no worker serves it."""
        return await resolve_model(self.models, name)

    async def drop_in_model(self, name: str | None = None) -> ModelInfo:
        """The model a llama.cpp or OpenAI client names, read as llama-server reads it: any name
        is the one model served; with several, MODEL_ALIASES maps names (registry.find_drop_in_model)."""
        return await resolve_model(self.models, name, aliases=self.settings.model_aliases)

    def job(self, kind: JobKind, payload: dict[str, Any], model: ModelInfo | str, *, stream: bool = False) -> Job:
        return Job.create(
            kind,
            payload,
            model=model if isinstance(model, str) else model.id,
            stream=stream,
            deadline_s=self.settings.job_deadline_s,
            timeout_s=self.settings.job_timeout_s,
        )

    async def read_json(self, req: falcon.asgi.Request) -> Any:
        check_json_type(req.content_type)
        limit = self.settings.max_body_bytes
        too_large = GatewayError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is larger than {limit} bytes")
        if req.content_length is not None and req.content_length > limit:
            raise too_large
        timeout_s = self.settings.body_timeout_s
        try:
            # One deadline for the whole body: a sender dripping a byte a second never resets it.
            body = await asyncio.wait_for(req.stream.read(limit + 1), timeout=timeout_s)
        except TimeoutError:
            raise GatewayError(
                ErrorKind.REQUEST_TIMEOUT, f"the request body did not arrive within {timeout_s:g} s (BODY_TIMEOUT)"
            ) from None
        if len(body) > limit:
            raise too_large
        return parse_json(body)

    async def result_event(self, req: falcon.asgi.Request, job: Job) -> Event:
        """Run a job and return its result event (raising its error)."""
        handle = await self.queue.submit(job)
        with DisconnectGuard(req, handle):
            return await final_result(handle.events())

    async def result(self, req: falcon.asgi.Request, job: Job) -> Any:
        """Run a job and return its result (raising its error)."""
        return (await self.result_event(req, job)).value()

    async def prompt_tokens(self, req: falcon.asgi.Request, conversation: dict[str, Any], model: ModelInfo) -> Any:
        """The tokenize result (``{"tokens": [...]}``) of a chat's prompt as the model's template
        renders it, tools included: two jobs on the queue that holds no generation slot."""
        rendered = await self.result(req, self.job(JobKind.APPLY_TEMPLATE, conversation, model))
        tokenize = {"content": rendered.get("prompt", ""), "add_special": True, "parse_special": True}
        return await self.result(req, self.job(JobKind.TOKENIZE, tokenize, model))

    async def respond(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        job: Job,
        *,
        chunks: StreamEncoder,
        content_type: str,
        whole: Callable[[Any], Any],
    ) -> None:
        """Stream the job with ``chunks`` if the client asked for a stream, else answer
        ``whole(result)`` as JSON."""
        if job.stream:
            await self.stream(req, resp, job, chunks, content_type)
        else:
            send_json(resp, whole(await self.result(req, job)))

    async def stream(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        job: Job,
        encoder: StreamEncoder,
        content_type: str,
    ) -> None:
        """Run a job and stream its events to the client, one write per read of the queue (the
        events that arrived together), or per encoded chunk for :class:`OneEventPerWrite`.

        The response starts only with the first chunk the client sees, so an error that comes
        before any output is still answered with its HTTP status, as llama.cpp does.
        """
        handle = await self.queue.submit(job)
        guard = DisconnectGuard(req, handle).arm()
        batches = handle.batches()
        writes = _Writes(encoder)
        if isinstance(encoder, OpensEarly):
            _stream_headers(resp, content_type, handle.queue_position)
            resp.stream = _kept_alive(batches, encoder, writes, guard)
            return
        try:
            first = await _first_output(batches, encoder)
        except BaseException:
            guard.disarm()
            raise
        _stream_headers(resp, content_type, handle.queue_position)
        resp.stream = _encoded(first, batches, writes, guard)

    async def stream_choices(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        jobs: list[Job],
        encoder: ChoicesEncoder,
        content_type: str,
    ) -> None:
        """Run one job per choice and stream their events interleaved as they come, each encoded
        with its choice's index. As with one job, an error before any output is answered with
        its HTTP status; an error after it ends the stream, and the other choices' jobs."""
        choices = _Choices()
        try:
            for job in jobs:
                choices.handles.append(await self.queue.submit(job))
        except BaseException:
            await choices.cancel()
            raise
        guard = DisconnectGuard(req, choices).arm()
        batches = choices.batches()
        try:
            first = await _first_choice_output(batches, encoder)
        except BaseException:
            guard.disarm()
            await batches.aclose()
            await choices.cancel()
            raise
        # The first choice's job was queued first: where the answer's first output can come from.
        _stream_headers(resp, content_type, choices.handles[0].queue_position)
        resp.stream = _choices_encoded(first, batches, encoder, choices, guard)


class _Choices:
    """The jobs of one request's choices: their events merged, and cancelled together."""

    def __init__(self) -> None:
        self.handles: list[JobHandle] = []

    async def batches(self) -> AsyncGenerator[tuple[int, list[Event]], None]:
        """(choice, events that arrived together) in arrival order until every job has ended; a
        job's queue error (its deadline, Redis lost) arrives as its error event."""
        arrived: asyncio.Queue[tuple[int, list[Event] | None]] = asyncio.Queue()

        async def pump(index: int, handle: JobHandle) -> None:
            # put_nowait: the queue is unbounded, and a cancelled pump must not await in finally.
            try:
                async for batch in handle.batches():
                    arrived.put_nowait((index, batch))
            except GatewayError as error:
                arrived.put_nowait((index, [Event.error(error)]))
            finally:
                arrived.put_nowait((index, None))

        pumps = [asyncio.ensure_future(pump(index, handle)) for index, handle in enumerate(self.handles)]
        try:
            running = len(pumps)
            while running:
                index, batch = await arrived.get()
                if batch is None:
                    running -= 1
                else:
                    yield index, batch
        finally:
            for task in pumps:
                task.cancel()

    async def cancel(self) -> None:
        for handle in self.handles:
            await handle.cancel()


async def _first_choice_output(
    batches: AsyncIterator[tuple[int, list[Event]]], encoder: ChoicesEncoder
) -> tuple[bytes, bool]:
    """The first write the client sees, and whether an error (after some output) ended it."""
    async for index, batch in batches:
        chunks: list[bytes] = []
        for event in batch:
            if event.type is EventType.ERROR and not chunks:
                raise event.as_error()
            chunks += encoder.encode_choice(index, event)
        if chunks:
            return b"".join(chunks), batch[-1].type is EventType.ERROR
    raise GatewayError(ErrorKind.SERVER, "the jobs ended without a result")


async def _choices_encoded(
    first: tuple[bytes, bool],
    batches: AsyncGenerator[tuple[int, list[Event]], None],
    encoder: ChoicesEncoder,
    choices: _Choices,
    guard: DisconnectGuard,
) -> AsyncIterator[bytes]:
    try:
        write, failed = first
        yield write
        if not failed:
            async for index, batch in batches:
                write = b"".join([chunk for event in batch for chunk in encoder.encode_choice(index, event)])
                if write:
                    yield write
                if batch[-1].type is EventType.ERROR:
                    failed = True
                    break
        if failed:
            await batches.aclose()
            await choices.cancel()
    finally:
        guard.disarm()


def _stream_headers(resp: falcon.asgi.Response, content_type: str, queue_position: int | None) -> None:
    resp.content_type = content_type
    resp.set_header("Cache-Control", "no-cache")
    # Proxies such as nginx would otherwise batch events, which LlamaLib cannot parse.
    resp.set_header("X-Accel-Buffering", "no")
    if queue_position is not None:
        # Sent with the status line, so only the place the job had when queued, 0 being next.
        resp.set_header(QUEUE_POSITION_HEADER, str(queue_position))


class _Writes:
    """The writes of a stream's events: those of each batch joined in one, unless the stream is
    :class:`OneEventPerWrite` (checked once: a Protocol's isinstance is slow)."""

    def __init__(self, encoder: StreamEncoder) -> None:
        self._encoder = encoder
        self._joined = not isinstance(encoder, OneEventPerWrite)

    def of(self, batch: list[Event]) -> list[bytes]:
        return self.joined([chunk for event in batch for chunk in self._encoder.encode(event)])

    def joined(self, chunks: list[bytes]) -> list[bytes]:
        if self._joined and len(chunks) > 1:
            return [b"".join(chunks)]
        return chunks


async def _first_output(batches: AsyncIterator[list[Event]], encoder: StreamEncoder) -> tuple[bool, list[bytes]]:
    """The chunks of the first batch the client sees, and whether it ended the job."""
    async for batch in batches:
        chunks: list[bytes] = []
        for event in batch:
            if event.type is EventType.ERROR and not chunks:
                raise event.as_error()
            chunks += encoder.encode(event)
        if chunks or batch[-1].type.is_final:
            return batch[-1].type.is_final, chunks
    raise GatewayError(ErrorKind.SERVER, "the job ended without a result")


async def _encoded(
    first: tuple[bool, list[bytes]], batches: AsyncIterator[list[Event]], writes: _Writes, guard: DisconnectGuard
) -> AsyncIterator[bytes]:
    try:
        ended, chunks = first
        for write in writes.joined(chunks):
            yield write
        if ended:
            return
        try:
            async for batch in batches:
                for write in writes.of(batch):
                    yield write
        except GatewayError as error:
            # The status line is long gone (Redis lost, the API's own timeout): tell the client the
            # way its dialect tells any late error, rather than cutting the stream with a traceback.
            for write in writes.of([Event.error(error)]):
                yield write
    finally:
        guard.disarm()


async def _kept_alive(
    batches: AsyncIterator[list[Event]], encoder: OpensEarly, writes: _Writes, guard: DisconnectGuard
) -> AsyncIterator[bytes]:
    # The next batch is awaited in a task of its own, so that a keepalive never cancels a read
    # half-way (which would end the batches' generator).
    upcoming: asyncio.Task[list[Event]] | None = None
    try:
        for write in writes.joined(list(encoder.opening())):
            yield write
        while True:
            upcoming = upcoming or asyncio.ensure_future(anext(batches))
            done, _ = await asyncio.wait({upcoming}, timeout=KEEPALIVE_S)
            if not done:
                yield encoder.keepalive()
                continue
            try:
                batch = upcoming.result()
            except StopAsyncIteration:
                return
            except GatewayError as error:
                batch = [Event.error(error)]
            upcoming = None
            for write in writes.of(batch):
                yield write
            if batch[-1].type.is_final:
                return
    finally:
        if upcoming is not None:
            upcoming.cancel()
        guard.disarm()


class DisconnectGuard:
    """While armed, a client disconnect cancels the job and stops the request's task."""

    #: Cancellations under way, kept referenced until they finish.
    _cancelling: set[asyncio.Task[None]] = set()

    def __init__(self, req: falcon.asgi.Request, handle: Cancellable) -> None:
        self._connection: ClientConnection | None = req.scope.get(CONNECTION)
        self._handle = handle
        self._unregister: Callable[[], None] | None = None

    def arm(self) -> DisconnectGuard:
        if self._connection is not None:
            request_task = asyncio.current_task()
            self._unregister = self._connection.when_gone(lambda: self._client_gone(request_task))
        return self

    def disarm(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    def __enter__(self) -> DisconnectGuard:
        return self.arm()

    def __exit__(self, *exc_info: object) -> None:
        self.disarm()

    def _client_gone(self, request_task: asyncio.Task[Any] | None) -> None:
        cancelling = asyncio.get_running_loop().create_task(self._handle.cancel())
        self._cancelling.add(cancelling)
        cancelling.add_done_callback(self._cancelling.discard)
        if request_task is not None:
            request_task.cancel()


def check_json_type(content_type: str | None) -> None:
    """A JSON body comes labelled as JSON, or unlabelled (some scripts send none).

    Any other label is refused, above all text/plain and the form encodings: a browser page may
    send those to another origin without asking it first, so accepting them would let any site
    spend a user's tokens with the credentials their browser holds for the API.
    """
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise GatewayError(
            ErrorKind.UNSUPPORTED_MEDIA_TYPE,
            f"the request body must be JSON sent as Content-Type: application/json, not {media} "
            "(with curl, add -H 'Content-Type: application/json')",
        )


def send_json(resp: falcon.asgi.Response, value: Any, status: int = 200) -> None:
    send_json_bytes(resp, orjson.dumps(value), status)


def send_json_bytes(resp: falcon.asgi.Response, body: bytes, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = body
