"""A storm of streams whose clients leave at every moment (before the first byte, after the first
token with a reset or a close, mid-way), against a real API (two gunicorn processes), a real
worker with llama-server and a real Redis: afterwards every gauge is at rest and Redis holds no
key that nothing will remove. (Issue 11 reported 13 streams left "in flight" after such a storm.)"""

from __future__ import annotations

import random
import socket
import threading
import time

import orjson
import pytest
import requests

from tests.support.metrics import scrape
from tests.support.processes import start_stack, wait_until
from velesio_core.queue.keys import BEATS_KEY, WORKERS_KEY

STREAMS = 100
DB = 14


@pytest.fixture(scope="module")
def storm_stack(redis_server, tiny_model, logs_dir):
    redis_server.client(DB).flushdb()
    running = start_stack(redis_server.url(DB), tiny_model, logs_dir, name="storm", API_WORKERS="2",
                          LLAMA_SLOTS="4", LLAMA_EMBEDDINGS="false")  # fmt: skip
    yield running
    running.stop()


def _open_stream(stack, body: bytes) -> socket.socket:
    host, port = stack.url("").removeprefix("http://").rstrip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(
        f"POST /completion HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _read_until(sock: socket.socket, marker: bytes) -> bool:
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        received += chunk
    return True


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def one_client(stack, index: int, outcomes: list[str]) -> None:
    rng = random.Random(index)
    long = orjson.dumps({"prompt": f"story {index}", "n_predict": 200, "ignore_eos": True, "stream": True})
    mode = index % 5
    try:
        if mode == 4:  # OpenAI's SDK way, left after a few chunks
            body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
                    "stream": True}  # fmt: skip
            with requests.post(stack.url("/v1/chat/completions"), json=body, headers=stack.auth, stream=True,
                               timeout=60) as response:  # fmt: skip
                for number, _ in enumerate(response.iter_lines()):
                    if number >= 3:
                        break
            outcomes.append("left mid-way")
            return
        sock = _open_stream(stack, long)
        if mode == 0:  # before the first byte (likely still queued behind the others)
            time.sleep(rng.uniform(0, 0.5))
            _reset(sock)
            outcomes.append("left before the first byte")
        elif mode == 1:
            got = _read_until(sock, b"data: ")
            _reset(sock)
            outcomes.append("reset after the first token" if got else "no token")
        elif mode == 2:
            got = _read_until(sock, b"data: ")
            sock.close()
            outcomes.append("closed after the first token" if got else "no token")
        else:
            _read_until(sock, b'"stop":true')
            sock.close()
            outcomes.append("read to the end")
    except OSError as error:
        outcomes.append(f"failed: {error}")


def keys_nothing_removes(client) -> list[str]:
    """Keys with no TTL, except those kept on purpose (queues, the registry, the beats)."""
    kept = {WORKERS_KEY, BEATS_KEY, "dramatiq:__heartbeats__"}
    left = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        if key in kept or key.startswith("dramatiq:__acks__."):
            continue
        if key.startswith("dramatiq:") and client.ttl(key) == -1:
            # A queue's list or message hash: kept, but it must hold nothing once the storm is over.
            if (client.llen(key) if client.type(key) == b"list" else client.hlen(key)) and not key.endswith(".wake"):
                left.append(f"{key} (not empty)")
            continue
        if client.ttl(key) == -1:
            left.append(key)
    return left


def test_a_storm_of_abandoned_streams_leaves_every_gauge_at_rest_and_no_key_behind(storm_stack, redis_server):
    outcomes: list[str] = []
    clients = [threading.Thread(target=one_client, args=(storm_stack, index, outcomes)) for index in range(STREAMS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=120)
    assert len(outcomes) == STREAMS and not [o for o in outcomes if o.startswith("failed")], outcomes
    assert outcomes.count("reset after the first token") > 10, outcomes  # the storm did what it says

    def at_rest() -> bool:
        return (
            scrape(storm_stack.url("/metrics"), storm_stack.auth).value("velesio_api_streams_in_flight") == 0
            and scrape(storm_stack.worker_metrics_url).value("velesio_worker_busy_slots") == 0
        )

    wait_until(at_rest, timeout=60, what="streams in flight and busy slots back to 0")
    client = redis_server.client(DB)
    wait_until(lambda: not keys_nothing_removes(client), timeout=30, what="no key left that nothing removes")
    # The stack still serves.
    answer = requests.post(storm_stack.url("/completion"), json={"prompt": "hi", "n_predict": 4},
                           headers=storm_stack.auth, timeout=60)  # fmt: skip
    assert answer.status_code == 200
