"""deploy/nginx/velesio.conf and deploy/caddy/Caddyfile, run by Debian's nginx and Caddy with a
self-signed certificate, in front of the real stack (Redis, a worker with llama-server on the
tiny model, the API): what a client sees through each must be what it sees from velesio itself.

Streams are checked for buffering causally, not by timing: the first chunk must reach the
client while llama-server is still generating (a busy slot), which a buffering proxy, holding
everything until the end, cannot do.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from collections.abc import Iterator

import orjson
import pytest
import requests

from tests.deploy.proxies import Proxy, post_raw, start_caddy, start_nginx, tool
from tests.support.llmunity import v2_parse_cumulative, v3_concatenate
from tests.support.processes import busy_slots, wait_until
from velesio_core.settings import Settings

STARTERS = {"nginx": start_nginx, "caddy": start_caddy}
#: The same text every time, so that what a client gets through a proxy can be compared with
#: what velesio answers without one.
GREEDY = {"temperature": 0, "seed": 7, "ignore_eos": True}


@pytest.fixture(scope="module", params=sorted(STARTERS))
def proxy(request, stack, tmp_path_factory, logs_dir) -> Iterator[Proxy]:
    api_port = int(stack.base_url.rsplit(":", 1)[1])
    running = STARTERS[request.param](api_port, tmp_path_factory.mktemp(request.param), logs_dir)
    yield running
    running.stop()


def idle(stack) -> None:
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=30, what="llama-server idle")


def events_of(chunk: bytes) -> list[bytes]:
    return [part for part in chunk.split(b"\n\n") if part.strip()]


def completion_stream(proxy: Proxy, stack, port: int | None = None) -> list[bytes]:
    body = orjson.dumps({"prompt": "Once upon a time", "n_predict": 48, "stream": True, **GREEDY})
    response = post_raw(proxy, "/completion", body, stack.auth, port=port)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return list(response.chunks)


def direct_text(stack) -> str:
    """What velesio answers without a proxy (greedy: the same text every time)."""
    body = {"prompt": "Once upon a time", "n_predict": 48, **GREEDY}
    return requests.post(stack.url("/completion"), json=body, headers=stack.auth, timeout=60).json()["content"]


def test_completion_stream_through_the_https_port_serves_llm_for_unity_v2(proxy, stack):
    chunks = completion_stream(proxy, stack)
    # llama.cpp's framing, untouched: a data line per token and the final one, nothing else.
    events = events_of(b"".join(chunks))
    assert len(events) == 48 + 1 and all(event.startswith(b"data: {") for event in events)
    # Each chunk ends where an event ends: LLM for Unity v2 parses the body at every chunk.
    assert all(chunk.endswith(b"\n\n") for chunk in chunks), [c for c in chunks if not c.endswith(b"\n\n")]
    last = json.loads(events[-1][len(b"data: ") :])
    assert last["stop"] is True and last["content"] == ""
    # LLM for Unity v2 re-parses the whole body at every download progress: at every chunk.
    body_so_far = b""
    for chunk in chunks:
        body_so_far += chunk
        v2_parse_cumulative(body_so_far.decode())
    assert v2_parse_cumulative(body_so_far.decode()) == direct_text(stack).strip()
    # Events that reach an HTTP proxy together leave it as one chunk (why velesio-stream.conf
    # exists): how often, here, where tokens come far faster than from a real model.
    merged = sum(len(events_of(chunk)) > 1 for chunk in chunks)
    print(f"{proxy.name}: {merged} of {len(chunks)} chunks carried more than one event")


def test_completion_stream_through_nginx_s_stream_port_serves_llm_for_unity_v3(proxy, stack):
    if proxy.stream_port is None:
        pytest.skip(f"{proxy.name} has no TLS-only (layer 4) proxy in Debian's package: docs/deploy.md")
    chunks = completion_stream(proxy, stack, port=proxy.stream_port)
    # LlamaLib (v3) parses each HTTP chunk alone as one event: a merged or split one aborts it.
    assert [len(events_of(chunk)) for chunk in chunks] == [1] * (48 + 1)
    content, tokens, last = v3_concatenate(chunks)
    assert last["stop"] is True and last["content"] == "" and len(tokens) == 48
    assert content == direct_text(stack)
    assert v2_parse_cumulative(b"".join(chunks).decode()) == content.strip()


STREAMS = {
    "llama.cpp SSE": ("/completion", {"prompt": "x", "n_predict": 3000, "ignore_eos": True, "stream": True}),
    "OpenAI SSE": (
        "/v1/chat/completions",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 3000,
            "stream": True,
            "ignore_eos": True,
        },
    ),
    "OpenAI completions SSE": (
        "/v1/completions",
        {"model": "tiny", "prompt": "x", "max_tokens": 3000, "stream": True, "ignore_eos": True},
    ),
    "Ollama NDJSON generate": (
        "/api/generate",
        {"model": "tiny", "prompt": "x", "options": {"num_predict": 3000, "ignore_eos": True}},
    ),
    "Ollama NDJSON chat": (
        "/api/chat",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "x"}],
            "options": {"num_predict": 3000, "ignore_eos": True},
        },
    ),
}


@pytest.mark.parametrize("dialect", sorted(STREAMS))
def test_every_dialect_streams_through_unbuffered(proxy, stack, dialect):
    path, body = STREAMS[dialect]
    idle(stack)
    response = post_raw(proxy, path, orjson.dumps(body), stack.auth)
    assert response.status == 200, b"".join(response.chunks)
    first = next(response.chunks)
    # Still generating when the first chunk is here: nothing held the stream back.
    still_generating = busy_slots(stack.llama_url)
    rest = b"".join(response.chunks)
    assert still_generating == 1, f"{proxy.name} delivered the first chunk of {dialect} only after the end"
    text = (first + rest).decode()
    if "NDJSON" in dialect:
        lines = [json.loads(line) for line in text.splitlines() if line]
        assert lines[-1]["done"] is True and len(lines) > 100
    else:
        events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
        if path != "/completion":
            assert events[-1] == "[DONE]"
            events = events[:-1]
        assert len(events) > 100
        json.loads(events[-1])


def test_a_long_generation_is_not_cut(proxy, stack):
    """A whole (non-streamed) answer: the proxy waits in silence until velesio answers."""
    idle(stack)
    body = {"prompt": "a long tale", "n_predict": 4000, "ignore_eos": True}
    answer = requests.post(proxy.url("/completion"), json=body, headers=stack.auth, verify=str(proxy.cert), timeout=600)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tokens_predicted"] == 4000


def test_a_body_of_max_body_bytes_passes(proxy, stack):
    limit = 16 * 1024 * 1024  # MAX_BODY_BYTES's default, which the stack runs with
    assert "MAX_BODY_BYTES" not in stack.env and Settings.from_env({}).max_body_bytes == limit
    prefix, suffix = b'{"prompt": "hi", "n_predict": 1, "padding": "', b'"}'
    fits = prefix + b"a" * (limit - len(prefix) - len(suffix)) + suffix
    assert len(fits) == limit
    answer = requests.post(proxy.url("/completion"), data=fits, headers=stack.auth, verify=str(proxy.cert), timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["stop"] is True


def access_log_client(stack, path: str) -> str:
    """The client velesio's access log names for the one request to ``path``."""
    api = stack.process("main-api")
    wait_until(lambda: f" {path} " in api.log(), timeout=10, what=f"the access log line for {path}")
    line = next(line for line in api.log().splitlines() if f" {path} " in line)
    return line.split("velesio.access: ", 1)[1].split()[0]


def post_from(proxy: Proxy, source: str, path: str, headers: dict[str, str]) -> int:
    """A request from ``source`` (an address of 127.0.0.0/8 the proxy sees as a client of its own)."""
    response = post_raw(proxy, path, b"", headers, source=source, accept="application/json")
    list(response.chunks)
    return response.status


def test_the_client_address_reaches_velesio_and_a_forged_one_is_ignored(proxy, stack):
    # Through the proxy, from 127.0.0.5, claiming to be 203.0.113.9: velesio trusts the proxy
    # (127.0.0.1, FORWARDED_ALLOW_IPS's default), the proxy trusts nobody.
    path = f"/no-such-route-{uuid.uuid4().hex}"
    post_from(proxy, "127.0.0.5", path, stack.auth | {"X-Forwarded-For": "203.0.113.9"})
    assert access_log_client(stack, path) == "127.0.0.5"

    # Straight to the API from 127.0.0.7, an address velesio does not trust: the header is ignored.
    path = f"/no-such-route-{uuid.uuid4().hex}"
    api_port = int(stack.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", api_port), timeout=10, source_address=("127.0.0.7", 0)) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 ")
    assert access_log_client(stack, path) == "127.0.0.7"


def test_http2_is_offered_and_serves_streams(proxy, stack):
    command = [
        tool("curl"), "--silent", "--show-error", "--http2", "--cacert", str(proxy.cert),
        "--write-out", "\\n%{http_version}", "-H", f"Authorization: Bearer {stack.token}",
        "-H", "Content-Type: application/json",
        "--data", orjson.dumps({"prompt": "Once", "n_predict": 8, "stream": True}).decode(),
        proxy.url("/completion"),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    body, _, version = output.rpartition("\n")
    assert version == "2"
    assert v2_parse_cumulative(body)
