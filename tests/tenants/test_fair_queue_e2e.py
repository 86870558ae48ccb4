"""The fair queue end to end: an API, one worker with a single llama-server slot and a queue of
two (QUEUE_CAP=2, so each key may have one job waiting), two stored keys. One key floods; the
other still gets every request in, and a stream says where its job was queued."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from tests.support.processes import Stack, start_stack
from tests.tenants.conftest import KEY_SECRET

#: A few hundred milliseconds of generation on one slot: long enough for a queue to build.
LONG = {"prompt": "a long tale", "n_predict": 400, "ignore_eos": True}


@pytest.fixture(scope="module")
def one_slot(redis_server, tiny_model, logs_dir) -> Iterator[Stack]:
    redis_server.client(11).flushdb()
    stack = start_stack(redis_server.url(11), tiny_model, logs_dir, name="fairq", KEY_SECRET=KEY_SECRET,
                        QUEUE_CAP="2", LLAMA_SLOTS="1")  # fmt: skip
    yield stack
    stack.stop()


def new_key(stack: Stack, name: str) -> dict[str, str]:
    response = requests.post(stack.url("/admin/keys"), json={"name": name, "scopes": ["llm"]}, headers=stack.auth,
                             timeout=10)  # fmt: skip
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def test_a_flooding_key_no_longer_starves_another_key(one_slot):
    flooder, other = new_key(one_slot, "flooder"), new_key(one_slot, "other")
    flooded: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            response = requests.post(one_slot.url("/completion"), json=LONG, headers=flooder, timeout=60)
            flooded.append(response.status_code)

    threads = [threading.Thread(target=flood) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        answers = [
            requests.post(one_slot.url("/completion"), json=LONG, headers=other, timeout=60).status_code
            for _ in range(8)
        ]
        streamed = requests.post(one_slot.url("/completion"), json={**LONG, "stream": True}, headers=other,
                                 timeout=60, stream=True)  # fmt: skip
        position = streamed.headers.get("X-Queue-Position")
        body = streamed.content
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    # The flood did fill its share of the queue (else this would show nothing)...
    assert 503 in flooded and 200 in flooded
    # ...and the other key's requests all got in, one by one, as the queue's cap used to refuse them.
    assert answers == [200] * 8
    assert streamed.status_code == 200 and b"data: " in body
    # Queued behind at most the flooder's one waiting job.
    assert position in ("0", "1")
