"""The real client behind a reverse proxy, and one access-log line per request that names it.

Behind nginx or Caddy every connection comes from the proxy, so the address that logs (and any
per-client limit) must come from the proxy's X-Forwarded-For. That header is only believed when
the connection itself comes from FORWARDED_ALLOW_IPS (gunicorn reads the same variable for its
scheme headers); from anyone else it is ignored, since any client can send one. The ASGI scope's
``client`` is rewritten, so Falcon's ``req.remote_addr`` is the real client everywhere after this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

access_log = logging.getLogger("velesio.access")

Networks = tuple[IPv4Network | IPv6Network, ...]
# ASGI's callables, as the ASGI specification defines them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def client_address(peer: str | None, forwarded_for: list[str], trusted: Networks) -> str | None:
    """The client: the peer itself unless it is a trusted proxy; then, walking X-Forwarded-For from
    the right (the hop nearest us), the first address that is not a trusted proxy."""
    if peer is None or not _trusted(peer, trusted):
        return peer
    client = peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if not _is_address(hop):
            break  # garbage from further left cannot be trusted any more than what we have
        client = hop
        if not _trusted(hop, trusted):
            break
    return client


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, trusted: Networks) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


class ForwardedClient:
    """ASGI wrapper: resolve the client, then log ``client method path status seconds`` when the
    response (a stream included) has ended. The query string is left out: it may carry a key."""

    def __init__(self, app: App, trusted: Networks) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        # ASGI allows any iterable of iterable pairs (falcon.testing sends iterators of iterators):
        # read here, they would be used up before the app reads them.
        headers = scope["headers"] = [tuple(pair) for pair in scope["headers"]]
        forwarded = [value.decode("latin-1") for name, value in headers if name == b"x-forwarded-for"]
        host = client_address(peer[0] if peer else None, forwarded, self.trusted)
        if peer and host != peer[0]:
            scope["client"] = (host, 0)
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            access_log.info(
                "%s %s %s %s %.3f",
                host or "-",
                scope["method"],
                scope["path"],
                status or "-",
                time.perf_counter() - started,
            )
