"""Carry a job from a request to the queue and its events back to the client.

The same path serves both kinds of answer: a stream sends each event as it arrives, a whole
answer waits for the final event. Either way, a client that disconnects cancels its job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import falcon.asgi
import orjson

from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event, EventType, final_result
from velesio_core.jobs import Job, JobKind
from velesio_core.queue.interface import JobHandle, JobQueue
from velesio_core.settings import Settings
from velesio_core.validation import parse_json

from .disconnect import CONNECTION, ClientConnection

Encoder = Callable[[Event], bytes | None]


class Relay:
    def __init__(self, queue: JobQueue, settings: Settings) -> None:
        self.queue = queue
        self._settings = settings

    def job(self, kind: JobKind, payload: dict[str, Any], *, stream: bool = False, model: str | None = None) -> Job:
        return Job.create(
            kind,
            payload,
            stream=stream,
            model=model,
            deadline_s=self._settings.job_deadline_s,
            timeout_s=self._settings.job_timeout_s,
        )

    async def read_json(self, req: falcon.asgi.Request) -> Any:
        limit = self._settings.max_body_bytes
        too_large = GatewayError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is larger than {limit} bytes")
        if req.content_length is not None and req.content_length > limit:
            raise too_large
        body = await req.stream.read(limit + 1)
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

    async def stream(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, job: Job, encode: Encoder, content_type: str
    ) -> None:
        """Run a job and stream its events to the client, one write per event.

        The response starts only with the first event the client sees, so an error that comes
        before any output is still answered with its HTTP status, as llama.cpp does.
        """
        handle = await self.queue.submit(job)
        guard = DisconnectGuard(req, handle).arm()
        events = handle.events()
        try:
            first = await _first_visible(events, encode)
            if first.type is EventType.ERROR:
                raise first.as_error()
        except BaseException:
            guard.disarm()
            raise
        resp.content_type = content_type
        resp.set_header("Cache-Control", "no-cache")
        # Proxies such as nginx would otherwise batch events, which LlamaLib cannot parse.
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = _encoded(first, events, encode, guard)


async def _first_visible(events: AsyncIterator[Event], encode: Encoder) -> Event:
    async for event in events:
        if event.type.is_final or encode(event) is not None:
            return event
    raise GatewayError(ErrorKind.SERVER, "the job ended without a result")


async def _encoded(
    first: Event, events: AsyncIterator[Event], encode: Encoder, guard: DisconnectGuard
) -> AsyncIterator[bytes]:
    try:
        chunk = encode(first)
        if chunk is not None:
            yield chunk
        if first.type.is_final:
            return
        async for event in events:
            chunk = encode(event)
            if chunk is not None:
                yield chunk
    finally:
        guard.disarm()


class DisconnectGuard:
    """While armed, a client disconnect cancels the job and stops the request's task."""

    #: Cancellations under way, kept referenced until they finish.
    _cancelling: set[asyncio.Task] = set()

    def __init__(self, req: falcon.asgi.Request, handle: JobHandle) -> None:
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

    def __exit__(self, *exc_info) -> None:
        self.disarm()

    def _client_gone(self, request_task: asyncio.Task | None) -> None:
        cancelling = asyncio.get_running_loop().create_task(self._handle.cancel())
        self._cancelling.add(cancelling)
        cancelling.add_done_callback(self._cancelling.discard)
        if request_task is not None:
            request_task.cancel()


def send_json(resp: falcon.asgi.Response, value: Any, status: int = 200) -> None:
    send_json_bytes(resp, orjson.dumps(value), status)


def send_json_bytes(resp: falcon.asgi.Response, body: bytes, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = body
