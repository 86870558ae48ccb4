"""What a web page on another origin (a game's WebGL build, a studio's tools) may do with the API,
as Chromium enforces it: every method a route takes passes the preflight, and the script reads
the key's rate-limit headers and Retry-After, which a game paces itself by, and a stream's place
in the queue."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
import requests

from tests.browser.conftest import KEY_SECRET
from tests.support.processes import Stack, free_port, start_stack


@pytest.fixture(scope="module")
def cors_stack(redis_server, tiny_model, logs_dir) -> Iterator[Stack]:
    running = start_stack(redis_server.url(11), tiny_model, logs_dir, name="cors", LLAMA_SLOTS="1",
                          KEY_SECRET=KEY_SECRET)  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def other_origin() -> Iterator[str]:
    """A blank page served from another port: another origin than the API's."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>a game</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Blank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def fetch(page, url: str, *, method: str = "GET", key: str, body: dict | None = None) -> dict:
    """fetch() from the page; the status and the answer's headers its script can read."""
    options = {"method": method, "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}}
    if body is not None:
        options["body"] = json.dumps(body)
    return page.js(
        f"fetch({json.dumps(url)}, {json.dumps(options)}).then(r => ({{status: r.status,"
        " headers: Object.fromEntries(r.headers.entries())}), e => ({error: String(e)}))"
    )


def test_a_page_on_another_origin_uses_every_method_and_reads_the_rate_limits(cors_stack, browser, other_origin):
    page = browser.new_page()
    page.goto(other_origin)
    admin = cors_stack.token
    made = requests.post(cors_stack.url("/admin/keys"), headers=cors_stack.auth, timeout=30,
                         json={"name": "web-game", "scopes": ["llm"], "limits": {"rpm": 2}}).json()  # fmt: skip

    # The admin API's PATCH and DELETE need a preflight that names them.
    patched = fetch(page, cors_stack.url(f"/admin/keys/{made['id']}"), method="PATCH", key=admin, body={"weight": 2})
    assert patched.get("status") == 200, patched

    # The key's limits reach the script, and so does the wait once they are spent.
    completion = {"prompt": "hi", "n_predict": 1}
    first = fetch(page, cors_stack.url("/completion"), method="POST", key=made["key"], body=completion)
    assert first.get("status") == 200, first
    assert first["headers"]["x-ratelimit-limit-requests"] == "2"
    assert first["headers"]["x-ratelimit-remaining-requests"] == "1"
    fetch(page, cors_stack.url("/completion"), method="POST", key=made["key"], body=completion)
    refused = fetch(page, cors_stack.url("/completion"), method="POST", key=made["key"], body=completion)
    assert refused.get("status") == 429, refused
    assert int(refused["headers"]["retry-after"]) >= 1

    # A stream's place in the queue (the only job: next in line).
    streamed = fetch(page, cors_stack.url("/completion"), method="POST", key=admin, body={**completion, "stream": True})
    assert streamed.get("status") == 200 and streamed["headers"]["x-queue-position"] == "0", streamed

    deleted = fetch(page, cors_stack.url(f"/admin/keys/{made['id']}"), method="DELETE", key=admin)
    assert deleted.get("status") in (200, 204), deleted
