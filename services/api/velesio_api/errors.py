"""Every error leaves in the shape of the client's own dialect, with its status.

The dialect is told by the path (see dialect.py). Unexpected exceptions are logged here with their
traceback and answered with a plain 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import falcon
import falcon.asgi

from velesio_core.dialects.a1111 import encode as a1111
from velesio_core.dialects.anthropic import encode as anthropic
from velesio_core.dialects.llamacpp import encode as llamacpp
from velesio_core.dialects.ollama import encode as ollama
from velesio_core.dialects.openai import encode as openai
from velesio_core.errors import ErrorKind, GatewayError

from .dialect import dialect_of

log = logging.getLogger(__name__)

#: A dialect's error renderer: the body and its content type.
Renderer = Callable[[GatewayError], tuple[bytes, str]]


def _json(error_body: Callable[[GatewayError], bytes]) -> Renderer:
    return lambda error: (error_body(error), falcon.MEDIA_JSON)


#: Each dialect's error renderer (see dialect.py for which paths speak which).
RENDERERS: dict[str, Renderer] = {
    "llamacpp": _json(llamacpp.error_body),
    "openai": _json(openai.error_body),
    "ollama": _json(ollama.error_body),
    "a1111": _json(a1111.error_body),
    "anthropic": _json(anthropic.error_body),
}

#: Dialects whose clients expect other statuses than velesio's own for some errors.
STATUSES: dict[str, Callable[[GatewayError], int]] = {"anthropic": anthropic.error_status}

#: Each dialect's challenge with a 401, where its clients expect one: A1111's expect HTTP Basic's.
AUTH_CHALLENGES: dict[str, str] = {"a1111": 'Basic realm="velesio"'}


def render(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: GatewayError) -> None:
    dialect = dialect_of(req.path)
    body, content_type = RENDERERS[dialect](error)
    status = STATUSES.get(dialect)
    resp.status = error.status if status is None else status(error)
    resp.content_type = content_type
    resp.data = body
    resp.stream = None
    if error.retry_after_s is not None:
        resp.set_header("Retry-After", str(error.retry_after_s))
    if error.kind is ErrorKind.REQUEST_TIMEOUT:
        # The rest of the body may still arrive: it must not be read as the next request.
        resp.set_header("Connection", "close")
    if error.kind is ErrorKind.AUTHENTICATION:
        challenge = AUTH_CHALLENGES.get(dialect)
        if challenge is not None:
            resp.set_header("WWW-Authenticate", challenge)


_FALCON_KINDS = {
    404: (ErrorKind.NOT_FOUND, "File Not Found"),
    405: (ErrorKind.METHOD_NOT_ALLOWED, "Method Not Allowed"),
    413: (ErrorKind.PAYLOAD_TOO_LARGE, "the request body is too large"),
    415: (ErrorKind.UNSUPPORTED_MEDIA_TYPE, "unsupported media type"),
}


async def _gateway_error(req, resp, error: GatewayError, params) -> None:
    render(req, resp, error)


async def _falcon_error(req, resp, error: falcon.HTTPError, params) -> None:
    kind, message = _FALCON_KINDS.get(error.status_code, (None, None))
    if kind is None:
        kind = ErrorKind.SERVER if error.status_code >= 500 else ErrorKind.INVALID_REQUEST
        message = error.description or error.title
    render(req, resp, GatewayError(kind, message))
    for name, value in (error.headers or {}).items():
        resp.set_header(name, value)


async def _unexpected(req, resp, error: Exception, params) -> None:
    log.exception("unexpected error on %s %s", req.method, req.path)
    render(req, resp, GatewayError(ErrorKind.SERVER, "internal error; the server log has the details"))


def install(app: falcon.asgi.App) -> None:
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _falcon_error)
    app.add_error_handler(GatewayError, _gateway_error)
