"""An error after a stream has started, in each dialect's own way (the HTTP status is gone).

The stack runs with JOB_TIMEOUT=1: a long generation is cut by its timeout after it has streamed
tokens, and llama-server's slot is freed.
"""

from __future__ import annotations

import json

import ollama
import openai
import orjson
import pytest
import requests

from tests.support.llmunity import post_chunks
from tests.support.processes import RedisServer, busy_slots, start_stack, wait_until

LONG = {"n_predict": 3000, "ignore_eos": True}


@pytest.fixture(scope="module")
def impatient(redis_server, tiny_model, logs_dir):
    redis_server.client(7).flushdb()
    running = start_stack(redis_server.url(7), tiny_model, logs_dir, name="impatient", JOB_TIMEOUT="1",
                          LLAMA_SLOTS="2", LLAMA_EMBEDDINGS="false")  # fmt: skip
    yield running
    running.stop()


def test_llama_cpp_stream_ends_with_an_error_event(impatient):
    body = orjson.dumps({"prompt": "a long tale", "stream": True, **LONG})
    status, _, chunks = post_chunks(impatient.url("/completion"), body, impatient.auth)
    events = [json.loads(chunk[len(b"data: ") : -2]) for chunk in chunks]
    assert status == 200 and len(events) > 10
    assert all("error" not in event for event in events[:-1])
    assert events[-1]["error"] == {"code": 504, "message": "the job did not finish within 1 s",
                                   "type": "unavailable_error"}  # fmt: skip
    wait_until(lambda: busy_slots(impatient.llama_url) == 0, timeout=10, what="the slot freeing")


def test_a_whole_answer_that_times_out_is_a_504(impatient):
    response = requests.post(impatient.url("/completion"), json={"prompt": "a long tale", **LONG},
                             headers=impatient.auth, timeout=30)  # fmt: skip
    assert response.status_code == 504 and response.json()["error"]["type"] == "unavailable_error"


def test_openai_stream_error_raises_in_the_sdk(impatient):
    with openai.OpenAI(base_url=impatient.url("/v1"), api_key=impatient.token, max_retries=0) as sdk:
        stream = sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "go"}],
                                             max_tokens=3000, stream=True, extra_body={"ignore_eos": True})  # fmt: skip
        received = 0
        with pytest.raises(openai.APIError) as raised:
            for chunk in stream:
                received += bool(chunk.choices and chunk.choices[0].delta.content)
    assert received > 10 and "1 s" in str(raised.value)


def test_ollama_stream_error_is_one_more_line(impatient):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "options": {"num_predict": 3000}}
    response = requests.post(impatient.url("/api/chat"), json=body, headers=impatient.auth, timeout=30)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200 and len(lines) > 10
    assert lines[-1] == {"error": "the job did not finish within 1 s"}
    with ollama.Client(host=impatient.base_url, headers=impatient.auth) as sdk, pytest.raises(ollama.ResponseError):
        for _ in sdk.chat(model="tiny", messages=body["messages"], options=body["options"], stream=True):
            pass


@pytest.mark.slow
def test_losing_redis_mid_stream_ends_the_stream_with_an_error_event(tiny_model, logs_dir):
    own_redis = RedisServer.start(logs_dir)  # this test kills it
    stack = start_stack(own_redis.url(0), tiny_model, logs_dir, name="redis-lost", LLAMA_SLOTS="1",
                        LLAMA_EMBEDDINGS="false")  # fmt: skip
    try:
        body = {"prompt": "a long tale", "stream": True, **LONG}
        url = stack.url("/completion")
        with requests.post(url, json=body, headers=stack.auth, stream=True, timeout=30) as response:
            events = []
            for line in response.iter_lines():
                if line:
                    events.append(json.loads(line.removeprefix(b"data: ")))
                    if len(events) == 1:
                        own_redis.stop()
        assert response.status_code == 200 and len(events) > 1
        assert events[-1]["error"]["type"] == "unavailable_error" and "Redis" in events[-1]["error"]["message"]
        assert "Traceback" not in stack.process("redis-lost-api").log()
    finally:
        stack.stop()
        own_redis.stop()
