"""Keys at the API's edge: who is calling, what they may reach, and their limits on every job.

:class:`KeyAuth` (middleware) authenticates each request (API_TOKENS or a stored key), refuses a
path outside the key's scopes with 403 before the body is read, and sets OpenAI's rate-limit
headers on every answer, streams included: Falcon sends them with the status line, before the
first byte of a stream.

:class:`AdmittingQueue` wraps the job queue, so that no route can queue a job without admission:
each job is checked against its key's scopes, models, rates and quotas (atomically in Redis, see
velesio_core.tenants.admission), stamped with its key for a fair queue, and its lease released
however the job ends. The request's principal reaches the queue through a context variable that
the middleware sets: the route code in between needs no change to be governed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from velesio_core.auth import credential_from_headers
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event
from velesio_core.jobs import Job
from velesio_core.metrics.api import AUTH_FAILURES, KEY_REQUESTS
from velesio_core.queue.interface import JobHandle, JobQueue, each_event
from velesio_core.tenants.admission import Admission, Lease
from velesio_core.tenants.authn import ADMIN, Authenticator, Principal
from velesio_core.tenants.headers import RateSnapshot
from velesio_core.tenants.scopes import scope_of_path

from .disconnect import FalconApp
from .forwarded import Receive, Send
from .routing import Routes


@dataclass
class RequestTenancy:
    """One request's caller, and the limits its answer reports."""

    principal: Principal
    snapshot: RateSnapshot | None = None
    admitted: bool = False


_CURRENT: contextvars.ContextVar[RequestTenancy | None] = contextvars.ContextVar("velesio_tenancy", default=None)
#: Work a request leaves for after its response is sent (see AfterResponse).
_AFTER: contextvars.ContextVar[list[Callable[[], Awaitable[None]]] | None] = contextvars.ContextVar(
    "velesio_after_response", default=None
)


class AfterResponse:
    """Runs what a request left for after its response, before the request is over.

    A job's lease is released here: the client has its answer one Redis round trip sooner, and
    the server reads the next request on the same connection only once the slot is free again,
    so a client that waits for one answer before asking again never meets its own lease.
    """

    def __init__(self, app: FalconApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending: list[Callable[[], Awaitable[None]]] = []
        _AFTER.set(pending)
        try:
            await self.app(scope, receive, send)
        finally:
            for work in pending:
                await work()


def tenancy_of(req: falcon.asgi.Request) -> RequestTenancy:
    return getattr(req.context, "tenancy", None) or RequestTenancy(ADMIN)


class KeyAuth:
    """Every request needs a token or a key, except those to the routes declared public (see
    routing.py). Before routing, so that a path that does not exist is a 401 too without one."""

    def __init__(self, authenticator: Authenticator, admission: Admission | None, routes: Routes) -> None:
        self._authenticator = authenticator
        self._admission = admission
        self._routes = routes

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._routes.is_public(req.method, req.path):
            return
        credential = credential_from_headers(req.get_header("Authorization"), req.get_header("X-Api-Key"))
        principal = await self._authenticator.authenticate(credential)
        if principal is None:
            AUTH_FAILURES.labels(self._routes.dialect_of(req).name).inc()
            raise GatewayError(ErrorKind.AUTHENTICATION, "Invalid API Key")
        tenancy = RequestTenancy(principal)
        req.context.tenancy = tenancy
        _CURRENT.set(tenancy)
        scope = scope_of_path(req.path)
        if scope is not None and not principal.allows(scope):
            KEY_REQUESTS.labels(principal.label, "forbidden").inc()
            raise GatewayError(ErrorKind.PERMISSION, f"this API key's scopes do not include {scope.value!r}")

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        tenancy: RequestTenancy | None = getattr(req.context, "tenancy", None)
        if tenancy is None or tenancy.principal.key is None:
            return
        snapshot = tenancy.snapshot
        if snapshot is None and not tenancy.admitted and self._admission is not None:
            snapshot = await self._admission.peek(tenancy.principal)
        if snapshot is not None:
            for name, value in snapshot.headers().items():
                resp.set_header(name, value)


class AdmittingQueue:
    """A :class:`JobQueue` that admits every job against its caller's key before queueing it."""

    def __init__(self, queue: JobQueue, admission: Admission) -> None:
        self._queue = queue
        self._admission = admission

    def __getattr__(self, name: str) -> Any:
        # The wrapped queue's other attributes (its Redis client, depth) stay reachable.
        return getattr(self._queue, name)

    async def submit(self, job: Job) -> JobHandle:
        tenancy = _CURRENT.get() or RequestTenancy(ADMIN)
        principal = tenancy.principal
        # A refusal raises here; the middleware then peeks at the limits for the 429's headers.
        # A route may run several jobs for one request (Ollama's templated generate): one request.
        lease = await self._admission.admit(principal, job, new_request=not tenancy.admitted)
        tenancy.admitted = True
        if lease.snapshot is not None:
            tenancy.snapshot = lease.snapshot
        tenant = principal.tenant()
        if tenant is not None:
            job = job.model_copy(update={"tenant": tenant})
            lease.job = job
        try:
            handle = await self._queue.submit(job)
        except BaseException:
            await lease.finish(None)
            raise
        return LeasedHandle(handle, lease)

    async def close(self) -> None:
        await self._admission.close()
        await self._queue.close()


class LeasedHandle:
    """A job's handle that releases its lease when the job ends, however it ends."""

    #: Releases under way when their request's task was cancelled, kept referenced until done.
    _releasing: set[asyncio.Task[None]] = set()

    def __init__(self, handle: JobHandle, lease: Lease) -> None:
        self._handle = handle
        self._lease = lease
        self._ended = False
        self.job = handle.job
        self.queue_position = handle.queue_position

    def events(self) -> AsyncIterator[Event]:
        return each_event(self.batches())

    async def batches(self) -> AsyncGenerator[list[Event], None]:
        try:
            async for batch in self._handle.batches():
                final = batch[-1]
                if final.type.is_final:
                    self._ended = True
                    after = _AFTER.get()
                    if after is None:
                        await self._lease.finish(final)
                    else:
                        after.append(functools.partial(self._lease.finish, final))
                yield batch
        finally:
            if not self._ended:
                await self._release_shielded()

    async def cancel(self) -> None:
        await self._handle.cancel()
        await self._release_shielded()

    async def _release_shielded(self) -> None:
        # The request's task may be cancelled (its client left) while this runs: finish anyway.
        release = asyncio.get_running_loop().create_task(self._lease.finish(None))
        self._releasing.add(release)
        release.add_done_callback(self._releasing.discard)
        await asyncio.shield(release)
