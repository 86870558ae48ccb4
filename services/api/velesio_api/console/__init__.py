"""The console: a single-page app under /ui, and the admin routes only it needs.

The static files are the console's only unauthenticated routes (auth.py lists /ui as public for
GET). Everything the page does afterwards goes through the API with the key in a header, checked
server-side like any client's request. The page is served with a Content-Security-Policy that
allows nothing but this server's own scripts, styles and API (no inline script or style).

- ``GET /admin/cluster``: workers, queues, jobs and recent errors now (velesio_core.cluster_state).
- ``GET /admin/events``: the same as server-sent events, at most one a second.
- ``DELETE /admin/jobs/{job_id}``: cancel a job, waiting or running.

All three need an admin key (API_TOKENS, or a stored key with the ``admin`` scope).

- ``GET /admin/me``: any key: its name, scopes and limits, and today's use (what a plain key's
  console shows of itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources

import falcon
import falcon.asgi
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from velesio_core.cluster_state import SNAPSHOT_TTL_S, ClusterState
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.tenants.scopes import Scope
from velesio_core.tenants.store import KeyStore

from ..disconnect import CONNECTION
from ..relay import send_json
from ..routes import llamacpp
from ..routing import Routes

#: No inline script or style, no other origin; images may be data: URLs (generated images).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; script-src 'self'; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: A comment line keeps proxies from closing a quiet stream.
_KEEPALIVE_S = 15.0


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__).joinpath("static")
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


def _page_headers(resp: falcon.asgi.Response) -> None:
    resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")
    resp.set_header("Cache-Control", "no-cache")


class StaticFiles:
    def __init__(self) -> None:
        self._files = _static_files()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str = "index.html") -> None:
        found = self._files.get(name)
        if found is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"the console has no file {name!r}")
        resp.data, resp.content_type = found
        _page_headers(resp)


class ConsoleRoot:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        # Relative URLs in the page resolve under /ui/ only with the trailing slash.
        raise falcon.HTTPMovedPermanently("/ui/")


def require_admin(req: falcon.asgi.Request) -> None:
    """The tenants' middleware puts the caller on ``req.context.tenancy``; without it every
    accepted credential is one of API_TOKENS, an admin."""
    tenancy = getattr(req.context, "tenancy", None)
    if tenancy is not None and not tenancy.principal.is_admin:
        raise GatewayError(ErrorKind.PERMISSION, "this API key's scopes do not include 'admin'")


class Cluster:
    def __init__(self, state: ClusterState) -> None:
        self._state = state

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        require_admin(req)
        send_json(resp, await self._state.snapshot())


class ClusterEvents:
    def __init__(self, state: ClusterState) -> None:
        self._state = state

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        require_admin(req)
        first = await self._state.snapshot()  # a Redis failure is a clear error, before any byte
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self._events(req, first)

    async def _events(self, req: falcon.asgi.Request, first: dict[str, object]) -> AsyncIterator[bytes]:
        connection = req.scope.get(CONNECTION)
        sent_at = asyncio.get_running_loop().time()
        snapshot: dict[str, object] | None = first
        while connection is None or not connection.gone.is_set():
            if snapshot is not None:
                yield b"event: cluster\ndata: " + orjson.dumps(snapshot) + b"\n\n"
                sent_at = asyncio.get_running_loop().time()
            elif asyncio.get_running_loop().time() - sent_at > _KEEPALIVE_S:
                yield b": keepalive\n\n"
                sent_at = asyncio.get_running_loop().time()
            await asyncio.sleep(SNAPSHOT_TTL_S)
            try:
                snapshot = await self._state.snapshot()
            except RedisError:
                # Redis is away for a moment: keep the stream, the page shows the last state.
                snapshot = None


class Job:
    def __init__(self, state: ClusterState) -> None:
        self._state = state

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, job_id: str) -> None:
        require_admin(req)
        if not await self._state.cancel(job_id):
            raise GatewayError(ErrorKind.NOT_FOUND, f"no queued or running job has the id {job_id!r}")
        send_json(resp, {"id": job_id, "cancelled": True})


class Me:
    def __init__(self, store: KeyStore | None) -> None:
        self._store = store

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        tenancy = getattr(req.context, "tenancy", None)
        principal = tenancy.principal if tenancy is not None else None
        if principal is None or principal.key is None:
            send_json(resp, {"id": None, "name": "API_TOKENS", "scopes": sorted(Scope), "admin": True, "usage": None})
            return
        key = principal.key
        usage = await self._store.usage(key.id) if self._store is not None else None
        send_json(resp, {**key.public(), "admin": principal.is_admin, "usage": usage})


def add_routes(routes: Routes, redis: aioredis.Redis | None, store: KeyStore | None = None) -> None:
    """The console's page, and (with a queue on Redis) its live views."""
    # Answered, and its errors shaped, as velesio's own admin API is: llama.cpp's dialect.
    api = routes.speaking(llamacpp.DIALECT, under="/ui")
    files = StaticFiles()
    # The page, its script and its style need no key (GET only); what the page calls needs one.
    api.add("/ui", ConsoleRoot(), public=("GET",))
    api.add("/ui/", files, public=("GET",))
    api.add("/ui/{name}", files, public=("GET",))
    api.add("/admin/me", Me(store))
    if redis is None:
        return
    state = ClusterState(redis)
    api.add("/admin/cluster", Cluster(state))
    api.add("/admin/events", ClusterEvents(state))
    api.add("/admin/jobs/{job_id}", Job(state))
