"""Request middleware: CORS as llama.cpp answers it, token auth, and shutdown."""

from __future__ import annotations

import falcon.asgi

from velesio_core.auth import TokenSet, credential_from_headers, is_public
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.metrics.api import AUTH_FAILURES
from velesio_core.queue.interface import JobQueue

from .dialect import dialect_of


class Cors:
    """Any origin may call (browser games, web UIs); preflights are answered without auth."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.method == "OPTIONS":
            resp.status = 200
            resp.set_header("Access-Control-Allow-Credentials", "true")
            resp.set_header("Access-Control-Allow-Methods", "GET, POST")
            resp.set_header("Access-Control-Allow-Headers", "*")
            resp.complete = True

    async def process_response(self, req, resp, resource, req_succeeded) -> None:
        origin = req.get_header("Origin")
        if origin:
            resp.set_header("Access-Control-Allow-Origin", origin)
            resp.append_header("Vary", "Origin")


class Auth:
    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if is_public(req.method, req.path):
            return
        credential = credential_from_headers(req.get_header("Authorization"), req.get_header("X-Api-Key"))
        if not self._tokens.accepts(credential):
            AUTH_FAILURES.labels(dialect_of(req.path)).inc()
            raise GatewayError(ErrorKind.AUTHENTICATION, "Invalid API Key")


class CloseQueue:
    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    async def process_shutdown(self, scope, event) -> None:
        await self._queue.close()
