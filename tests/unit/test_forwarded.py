"""Who the client is behind a proxy: X-Forwarded-For counts only from FORWARDED_ALLOW_IPS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from velesio_api.forwarded import ForwardedClient, client_address
from velesio_core.settings import Settings, SettingsError

LOCAL = Settings.from_env({}).forwarded_allow_ips  # gunicorn's default: 127.0.0.1, ::1
PROXIES = Settings.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, ::1"}).forwarded_allow_ips


def test_an_untrusted_peer_is_the_client_whatever_it_claims():
    assert client_address("192.0.2.7", ["203.0.113.9"], LOCAL) == "192.0.2.7"


def test_a_trusted_proxy_names_the_client():
    assert client_address("127.0.0.1", ["203.0.113.9"], LOCAL) == "203.0.113.9"
    assert client_address("::1", ["2001:db8::5"], LOCAL) == "2001:db8::5"


def test_the_nearest_untrusted_hop_wins_over_what_the_client_wrote_further_left():
    # A client sent "1.1.1.1" itself; proxy 10.0.0.2 appended the real client, 10.0.0.1 appended 10.0.0.2.
    assert client_address("10.0.0.1", ["1.1.1.1, 198.51.100.4", "10.0.0.2"], PROXIES) == "198.51.100.4"


def test_garbage_in_the_header_stops_the_walk():
    assert client_address("127.0.0.1", ["not-an-address"], LOCAL) == "127.0.0.1"
    assert client_address("10.0.0.1", ["198.51.100.4, unknown, 10.0.0.2"], PROXIES) == "10.0.0.2"


def test_no_header_leaves_the_peer():
    assert client_address("127.0.0.1", [], LOCAL) == "127.0.0.1"
    assert client_address(None, ["203.0.113.9"], LOCAL) is None


def test_star_trusts_every_peer_and_a_bad_entry_is_a_clear_settings_error():
    everyone = Settings.from_env({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips
    assert client_address("192.0.2.7", ["203.0.113.9"], everyone) == "203.0.113.9"
    with pytest.raises(SettingsError, match="FORWARDED_ALLOW_IPS"):
        Settings.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.0/33"})


def test_the_app_behind_still_reads_headers_sent_as_a_one_pass_iterator():
    # ASGI allows any iterable of iterable pairs; falcon.testing's scopes hold iterators of both.
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["headers"] = list(scope["headers"])
        seen["client"] = scope["client"]
        await send({"type": "http.response.start", "status": 204, "headers": []})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    pairs = [(b"x-forwarded-for", b"203.0.113.9"), (b"authorization", b"Bearer t")]
    headers = iter([iter(pair) for pair in pairs])
    scope = {"type": "http", "method": "GET", "path": "/", "client": ("127.0.0.1", 5000), "headers": headers}
    asyncio.run(ForwardedClient(app, LOCAL)(scope, receive, send))
    assert seen == {"headers": pairs, "client": ("203.0.113.9", 0)}
