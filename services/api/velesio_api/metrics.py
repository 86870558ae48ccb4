"""The API's metrics: every request counted and timed, and ``GET /metrics`` to scrape them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import falcon.asgi
from prometheus_client.core import Metric

from velesio_core.metrics.api import (
    REQUEST_DURATION,
    REQUESTS,
    STREAMS_IN_FLIGHT,
    TIME_TO_FIRST_TOKEN,
    UNMATCHED_ROUTE,
)
from velesio_core.metrics.exposition import CONTENT_TYPE, render

from .routing import Routes

#: What a scrape reads besides the processes' own samples (the queue's state in Redis).
ScrapeState = Callable[[], Awaitable[list[Metric]]]


class RequestMetrics:
    """Counts and times every request. Put it first, so that it also sees the requests the other
    middleware refuses; a streamed response is timed to its last chunk."""

    def __init__(self, routes: Routes) -> None:
        self._routes = routes

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.arrived = time.perf_counter()

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        dialect = self._routes.dialect_of(req).name
        route = req.uri_template or UNMATCHED_ROUTE
        REQUESTS.labels(dialect, route, req.method, str(resp.status_code)).inc()
        if resp.stream is None:
            REQUEST_DURATION.labels(dialect, route, "false").observe(time.perf_counter() - req.context.arrived)
        elif isinstance(resp.stream, AsyncIterator):  # every stream velesio sends (relay.py)
            resp.stream = TimedStream(resp.stream, dialect, route, req.context.arrived)


class TimedStream:
    """A response stream, counted in flight from its first chunk until Falcon closes it.

    A class with ``close()`` rather than an async generator: Falcon awaits ``close()`` when a
    stream ends however it ends (a client gone mid-write included), while an async generator left
    suspended would be finalized only by the garbage collector, keeping its stream "in flight".
    """

    def __init__(self, stream: AsyncIterator[bytes], dialect: str, route: str, arrived: float) -> None:
        self._stream = stream
        self._dialect = dialect
        self._route = route
        self._arrived = arrived
        self._started = self._closed = False

    def __aiter__(self) -> TimedStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._started:
            self._started = True
            STREAMS_IN_FLIGHT.labels(self._dialect).inc()
            chunk = await anext(self._stream)
            TIME_TO_FIRST_TOKEN.labels(self._dialect, self._route).observe(time.perf_counter() - self._arrived)
            return chunk
        return await anext(self._stream)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            STREAMS_IN_FLIGHT.labels(self._dialect).dec()
            REQUEST_DURATION.labels(self._dialect, self._route, "true").observe(time.perf_counter() - self._arrived)
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class MetricsResource:
    """``GET /metrics``, behind the API's tokens like the rest of llama.cpp's API."""

    def __init__(self, state: ScrapeState) -> None:
        self._state = state

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        families = await self._state()
        # Adding up the processes' sample files reads them from disk: off the event loop.
        resp.data = await asyncio.to_thread(render, families)
        resp.content_type = CONTENT_TYPE
