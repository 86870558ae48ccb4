"""Several characters at once, and a client that leaves: its job stops and its slot frees.

Cancellation is checked in llama-server itself: its ``n_decode_total`` counter says how many
tokens it decoded, so a generation that was cut short is told apart from one that finished.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import orjson
import requests

from tests.support.llmunity import post_chunks, v3_concatenate
from tests.support.processes import busy_slots, llama_metric, wait_until


def marker_grammar(marker: str) -> str:
    return f'root ::= ("{marker} ")+'


def test_eight_streams_run_at_once_and_each_gets_its_own_tokens(stack):
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    peak_busy = 0
    done = threading.Event()

    def client(index: int) -> None:
        body = {"prompt": f"client {index}", "n_predict": 1200, "stream": True, "ignore_eos": True,
                "grammar": marker_grammar(f"k{index}z")}  # fmt: skip
        try:
            status, _, chunks = post_chunks(stack.url("/completion"), orjson.dumps(body), stack.auth)
            assert status == 200
            results[index] = v3_concatenate(list(chunks))[0]
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    def probe() -> None:
        nonlocal peak_busy
        while not done.is_set():
            peak_busy = max(peak_busy, busy_slots(stack.llama_url))

    prober = threading.Thread(target=probe)
    prober.start()
    clients = [threading.Thread(target=client, args=(index,)) for index in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=120)
    done.set()
    prober.join()

    assert not errors, errors
    for index, content in results.items():
        pieces = content.split()
        assert len(pieces) > 50, content
        # Only this client's marker: a token of another stream would show another marker.
        assert set(pieces[:-1]) == {f"k{index}z"}, content[:200]
        assert re.fullmatch(rf"k?{index}?z?", pieces[-1]) or pieces[-1] == f"k{index}z"
    assert len(results) == 8
    # One worker ran all eight at once, one per llama-server slot.
    assert peak_busy == 8


def test_a_client_that_disconnects_mid_stream_stops_its_generation(stack):
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=30, what="llama-server idle")
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")

    body = orjson.dumps({"prompt": "a long tale", "n_predict": 4000, "ignore_eos": True, "stream": True})
    status, _, chunks = post_chunks(stack.url("/completion"), body, stack.auth)
    assert status == 200
    for _ in range(5):
        next(chunks)
    assert busy_slots(stack.llama_url) == 1
    chunks.close()  # closes the socket: the client is gone

    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    decoded = llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before
    # Generating all 4000 tokens takes seconds; the job stopped within a fraction of that.
    assert 5 <= decoded < 2000, decoded


def test_a_client_that_gives_up_on_a_whole_answer_cancels_it_too(stack):
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=30, what="llama-server idle")
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")
    body = {"prompt": "a long tale", "n_predict": 4000, "ignore_eos": True}
    try:
        requests.post(stack.url("/completion"), json=body, headers=stack.auth, timeout=0.3)
        raise AssertionError("a 4000-token answer came back within 0.3 s")
    except requests.Timeout:
        pass  # requests closes the connection: the client has left
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    decoded = llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before
    assert decoded < 4000, decoded


def test_streams_and_whole_answers_do_not_block_tokenize(stack):
    # Auxiliary jobs have threads of their own: they answer while every slot generates.
    long = {"prompt": "busy", "n_predict": 2000, "ignore_eos": True, "stream": True}
    sockets = []
    for _ in range(8):
        status, _, chunks = post_chunks(stack.url("/completion"), orjson.dumps(long), stack.auth)
        assert status == 200
        next(chunks)
        sockets.append(chunks)
    assert busy_slots(stack.llama_url) == 8
    response = requests.post(stack.url("/tokenize"), json={"content": "hi"}, headers=stack.auth, timeout=5)
    assert response.status_code == 200
    for chunks in sockets:
        chunks.close()
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="all slots freeing")


def test_half_sent_request_is_cut_off_after_the_body_timeout(stack):
    # A client that announces a body and never sends it must not hold a connection forever.
    host, port = stack.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Authorization: Bearer " + stack.token.encode() + b"\r\n\r\n{\"prompt\"")  # fmt: skip
        started = time.monotonic()
        data = sock.recv(4096)
        waited = time.monotonic() - started
    assert data == b"" or data.startswith(b"HTTP/1.1 4"), data
    assert waited < 30, f"held for {waited:.0f} s with BODY_TIMEOUT=3"
