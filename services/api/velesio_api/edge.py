"""gunicorn's ASGI worker with the two limits it lacks at the edge: a deadline for a request's
headers, and a cap on open connections.

gunicorn's asyncio worker waits for a first request's headers for ever and accepts every
connection (its ``worker_connections`` is read but not enforced), so a client dripping its
headers a byte at a time, or a bot holding a thousand idle sockets, keeps them all. Here a
connection whose headers are not complete within HEADER_TIMEOUT of its first byte (or of
connecting) is closed, and one over API_MAX_CONNECTIONS is answered 503 and closed at once.
Request bodies have their own deadline, BODY_TIMEOUT, in the app (relay.read_json): there the
answer can be a 408 in the client's dialect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import gunicorn.asgi.protocol
import gunicorn.workers.gasgi
import orjson

log = logging.getLogger("velesio.api.edge")

#: Written to a connection over the cap: the request is not read, so its dialect is unknown;
#: every dialect's clients read a 503 with Retry-After as "retry later".
_BUSY_BODY = orjson.dumps(
    {"error": {"code": 503, "message": "too many open connections; retry shortly", "type": "unavailable_error"}}
)
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)
#: Warnings about refused or timed-out connections, at most one per this many seconds.
_WARN_EVERY_S = 10.0


#: gunicorn's protocol and worker, as the Any they are to the type checker: what we extend of them
#: (the connection's state, its request loop) is internal to gunicorn and typed nowhere.
_Protocol: Any = gunicorn.asgi.protocol.ASGIProtocol
_Worker: Any = gunicorn.workers.gasgi.ASGIWorker


class EdgeProtocol(_Protocol):  # type: ignore[misc]
    worker: EdgeWorker

    def __init__(self, worker: EdgeWorker) -> None:
        super().__init__(worker)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        if self.worker.nr_conns > self.worker.max_connections:
            self.worker.warn(f"refused a connection: {self.worker.max_connections} are open (API_MAX_CONNECTIONS)")
            transport.write(BUSY_RESPONSE)
            self._close_transport()
            if self._request_ready is not None:
                self._request_ready.set()
            return
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        # The first byte of a request on a kept-alive connection starts its headers' clock.
        if self._header_deadline is None and self._awaiting_request:
            self._arm_header_deadline()
        super().data_received(data)

    async def _serve_http_request(self, request: Any, sockname: Any, peername: Any) -> Any:
        self._cancel_header_deadline()
        return await super()._serve_http_request(request, sockname, peername)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.worker.loop.call_later(self.worker.header_timeout_s, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        self.worker.warn(
            f"closed a connection whose request headers took over {self.worker.header_timeout_s:g} s (HEADER_TIMEOUT)"
        )
        self._close_transport()
        if self._request_ready is not None:
            self._request_ready.set()


class EdgeWorker(_Worker):  # type: ignore[misc]
    """Configured by :func:`edge_worker` before gunicorn forks its workers."""

    header_timeout_s = 10.0
    max_connections = 1000
    _warned_at = float("-inf")

    loop: asyncio.AbstractEventLoop

    async def _serve(self) -> None:
        # gunicorn builds its protocol by name in _serve(); ours replaces it in this worker process.
        gunicorn.workers.gasgi.ASGIProtocol = EdgeProtocol  # type: ignore[attr-defined]
        await super()._serve()

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("%s", message)


def edge_worker(*, header_timeout_s: float, max_connections: int) -> type[EdgeWorker]:
    return type("EdgeWorker", (EdgeWorker,), {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
