"""Request middleware: CORS from an allowlist, and the queue's life (auth: see tenancy.py)."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from velesio_core.queue.interface import JobQueue
from velesio_core.tenants.headers import RATE_LIMIT_HEADERS

from .relay import QUEUE_POSITION_HEADER

#: Every method a route takes (the admin API's PATCH and DELETE, stored responses' DELETE).
ALLOWED_METHODS = "GET, HEAD, POST, PATCH, DELETE"
#: Answer headers a page's script may read beyond the CORS-safelisted ones: when to retry, the
#: key's rate limits, which a game's web build paces itself by, and a stream's place in the queue.
EXPOSED_HEADERS = ", ".join(("Retry-After", *RATE_LIMIT_HEADERS, QUEUE_POSITION_HEADER))


class Cors:
    """Which browser pages may call the API (CORS_ORIGINS); preflights are answered without auth.

    By default any origin may call, without credentials: velesio's tokens travel in headers a
    page sets itself, so a page sends one only when it means to. Only the origins listed in
    CORS_ORIGINS are echoed with ``Access-Control-Allow-Credentials``, which lets their pages use
    HTTP Basic credentials the browser holds. ``null`` (sandboxed frames, file:// pages) is
    never echoed: any page can claim it.
    """

    def __init__(self, origins: tuple[str, ...] = ()) -> None:
        self._origins = frozenset(origins)

    def _allow(self, origin: str | None, resp: falcon.asgi.Response) -> bool:
        if not origin or origin == "null":
            return False
        if not self._origins:
            resp.set_header("Access-Control-Allow-Origin", "*")
            return True
        resp.append_header("Vary", "Origin")
        if origin not in self._origins:
            return False
        resp.set_header("Access-Control-Allow-Origin", origin)
        resp.set_header("Access-Control-Allow-Credentials", "true")
        return True

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.method == "OPTIONS":
            resp.status = 200
            resp.complete = True
            if self._allow(req.get_header("Origin"), resp):
                resp.set_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
                # Named, not "*": a wildcard does not cover Authorization.
                asked = req.get_header("Access-Control-Request-Headers")
                resp.set_header("Access-Control-Allow-Headers", asked or "Authorization, Content-Type, X-Api-Key")
                resp.set_header("Access-Control-Max-Age", "600")

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        if req.method != "OPTIONS" and self._allow(req.get_header("Origin"), resp):
            resp.set_header("Access-Control-Expose-Headers", EXPOSED_HEADERS)


class CloseQueue:
    """Starts the queue's background work on the serving event loop, and closes the queue."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        start = getattr(self._queue, "start", None)  # only the Redis queue has any
        if start is not None:
            await start()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self._queue.close()
