"""Every error leaves in the shape of the client's own dialect, with its status.

The dialect is the one the request's route declared (see routing.py). Unexpected exceptions are
logged here with their traceback and answered with a plain 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import Request, Response

from velesio_core.errors import ErrorKind, GatewayError

from .routing import App, Dialect, Routes

log = logging.getLogger(__name__)

#: A route's URI fields, as Falcon passes them to error handlers.
Params = dict[str, Any]


def render(dialect: Dialect, resp: falcon.asgi.Response, error: GatewayError) -> None:
    resp.status = error.status if dialect.error_status is None else dialect.error_status(error)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dialect.error_body(error)
    resp.stream = None
    if error.retry_after_s is not None:
        resp.set_header("Retry-After", str(error.retry_after_s))
    if error.kind is ErrorKind.REQUEST_TIMEOUT:
        # The rest of the body may still arrive: it must not be read as the next request.
        resp.set_header("Connection", "close")
    if error.kind is ErrorKind.AUTHENTICATION and dialect.auth_challenge is not None:
        resp.set_header("WWW-Authenticate", dialect.auth_challenge)


_FALCON_KINDS = {
    404: (ErrorKind.NOT_FOUND, "File Not Found"),
    405: (ErrorKind.METHOD_NOT_ALLOWED, "Method Not Allowed"),
    413: (ErrorKind.PAYLOAD_TOO_LARGE, "the request body is too large"),
    415: (ErrorKind.UNSUPPORTED_MEDIA_TYPE, "unsupported media type"),
}


def install(app: App, routes: Routes) -> None:
    """Render every error in the dialect ``routes`` declared for the request's path."""

    async def gateway_error(req: Request, resp: Response, error: GatewayError, params: Params) -> None:
        render(routes.dialect_of(req), resp, error)

    async def falcon_error(req: Request, resp: Response, error: falcon.HTTPError, params: Params) -> None:
        known = _FALCON_KINDS.get(error.status_code)
        if known is not None:
            kind, message = known
        else:
            kind = ErrorKind.SERVER if error.status_code >= 500 else ErrorKind.INVALID_REQUEST
            message = error.description or error.title or ""
        render(routes.dialect_of(req), resp, GatewayError(kind, message))
        headers = error.headers or {}
        for name, value in headers.items() if isinstance(headers, Mapping) else headers:
            resp.set_header(name, value)

    async def unexpected(req: Request, resp: Response, exception: Exception, params: Params) -> None:
        log.exception("unexpected error on %s %s", req.method, req.path)
        error = GatewayError(ErrorKind.SERVER, "internal error; the server log has the details")
        render(routes.dialect_of(req), resp, error)

    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(falcon.HTTPError, falcon_error)
    app.add_error_handler(GatewayError, gateway_error)
