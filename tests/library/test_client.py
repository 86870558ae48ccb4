"""velesio_core.Client and AsyncClient against the real stack: Redis, a worker with llama-server
and the tiny model. The client shares the stack's Redis and queues, as the API does.

Cancellation is checked in llama-server itself (its n_decode_total counter and /slots), as in
tests/e2e/test_concurrency_and_cancel.py.
"""

from __future__ import annotations

import asyncio

import pytest
import requests

from tests.support import registry
from tests.support.processes import busy_slots, llama_metric, wait_until
from velesio_core import AsyncClient, Client
from velesio_core.client import (
    ChatCompletion,
    Completion,
    Done,
    InvalidRequest,
    ModelNotFound,
    QueueFull,
    Timeout,
    Token,
)
from velesio_core.queue.fair import FairQueue
from velesio_core.queue.keys import QueueKeys
from velesio_core.settings import Settings


@pytest.fixture
def client(stack):
    with Client(stack.env["REDIS_URL"]) as opened:
        yield opened


def idle(stack) -> None:
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=30, what="llama-server idle")


def test_complete_returns_the_text_and_counts_of_the_generation(client, stack):
    answer = client.complete("Once upon a time", max_tokens=12, ignore_eos=True, seed=3)
    assert isinstance(answer, Completion)
    assert answer.tokens_predicted == 12
    assert answer.stop_type == "limit"
    assert answer.text
    # The HTTP path gives the same text for the same seed: one model, one envelope.
    over_http = requests.post(
        stack.url("/completion"),
        json={"prompt": "Once upon a time", "n_predict": 12, "ignore_eos": True, "seed": 3},
        headers=stack.auth,
        timeout=60,
    ).json()
    assert answer.text == over_http["content"]


def test_a_stream_yields_tokens_then_the_result_whose_text_they_make(client):
    events = list(client.complete("The dragon", max_tokens=20, ignore_eos=True, stream=True))
    tokens = [event for event in events if isinstance(event, Token)]
    assert isinstance(events[-1], Done)
    result = events[-1].result
    assert len(tokens) == 20
    assert result.text == "".join(token.text for token in tokens)
    assert result.tokens_predicted == 20


def test_chat_answers_with_the_models_template(client):
    answer = client.chat([{"role": "user", "content": "Hello"}], max_tokens=8, seed=1)
    assert isinstance(answer, ChatCompletion)
    assert 0 < answer.tokens_predicted <= 8
    assert answer.tokens_evaluated > 1


def test_tokenize_and_embed_match_llama_server(client, stack):
    tokens = client.tokenize("hello world")
    direct = requests.post(stack.llama_url + "/tokenize", json={"content": "hello world"}, timeout=10).json()
    assert tokens.ids == direct["tokens"]
    vectors = client.embed(["a", "b c"])
    assert len(vectors.vectors) == 2
    assert len(vectors.vectors[0]) == len(vectors.vectors[1]) > 0
    assert vectors.prompt_tokens > 0


def test_leaving_a_stream_early_cancels_the_generation_on_the_worker(client, stack):
    idle(stack)
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")
    for count, _event in enumerate(client.complete("a long tale", max_tokens=4000, ignore_eos=True, stream=True)):
        if count == 5:
            assert busy_slots(stack.llama_url) == 1
            break
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    assert llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before < 2000


def test_a_stream_dropped_unread_cancels_the_job(client, stack):
    idle(stack)
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")
    stream = client.complete("a long tale", max_tokens=4000, ignore_eos=True, stream=True)
    wait_until(lambda: busy_slots(stack.llama_url) == 1, timeout=30, what="the job running")
    del stream
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    assert llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before < 2000


def test_cancelling_the_task_that_reads_cancels_the_job(stack):
    idle(stack)
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")

    async def scenario() -> None:
        async with AsyncClient(stack.env["REDIS_URL"]) as client:
            started = asyncio.Event()

            async def read() -> None:
                stream = await client.complete("a long tale", max_tokens=4000, ignore_eos=True, stream=True)
                async for event in stream:
                    if isinstance(event, Token):
                        started.set()

            task = asyncio.create_task(read())
            await asyncio.wait_for(started.wait(), 60)
            assert busy_slots(stack.llama_url) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    assert llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before < 2000


def test_leaving_the_streams_context_cancels_the_job(stack):
    idle(stack)
    decoded_before = llama_metric(stack.llama_url, "llamacpp:n_decode_total")

    async def scenario() -> None:
        async with (
            AsyncClient(stack.env["REDIS_URL"]) as client,
            await client.chat(
                [{"role": "user", "content": "tell a long tale"}], max_tokens=4000, ignore_eos=True, stream=True
            ) as stream,
        ):
            async for event in stream:
                if isinstance(event, Token):
                    break

    asyncio.run(scenario())
    wait_until(lambda: busy_slots(stack.llama_url) == 0, timeout=10, what="the slot freeing")
    assert llama_metric(stack.llama_url, "llamacpp:n_decode_total") - decoded_before < 2000


def test_a_bad_option_is_refused_before_anything_is_queued(client):
    with pytest.raises(InvalidRequest) as refused:
        client.complete("hi", max_tokens=-5)
    assert refused.value.status == 400
    assert "n_predict" in refused.value.message


def test_an_unknown_model_is_model_not_found(client):
    with pytest.raises(ModelNotFound) as refused:
        client.complete("hi", model="no-such-model")
    assert refused.value.status == 404


def test_a_job_past_its_run_timeout_is_a_timeout(stack):
    # Set up from the API's own settings (JOB_TIMEOUT), as a deployment would.
    settings = Settings.from_env({"REDIS_URL": stack.env["REDIS_URL"], "JOB_TIMEOUT": "0.5"})
    with Client.from_settings(settings) as client, pytest.raises(Timeout) as timed_out:
        client.complete("a long tale", max_tokens=100000, ignore_eos=True)
    assert timed_out.value.status == 504
    idle(stack)


@pytest.fixture
def unserved_model(stack, redis_server):
    with registry.unserved_model(redis_server.client(1)) as name:
        yield name


def test_a_full_queue_is_queue_full_and_a_job_no_worker_takes_is_a_timeout(stack, unserved_model):
    with Client(stack.env["REDIS_URL"], queue_cap=1, deadline_s=1.5) as client:
        waiting = client.complete("first", model=unserved_model, stream=True)
        with pytest.raises(QueueFull) as full:
            client.complete("second", model=unserved_model)
        assert full.value.status == 503
        assert full.value.retry_after == 1
        with pytest.raises(Timeout):
            list(waiting)


def test_an_async_stream_dropped_unread_takes_its_job_off_the_queue(stack, unserved_model, redis_server):
    async def scenario() -> None:
        async with AsyncClient(stack.env["REDIS_URL"]) as client:
            stream = await client.complete("waits", model=unserved_model, stream=True)
            keys, fair = QueueKeys(stream._handle.job.queue), FairQueue(redis_server.client(1))
            assert fair.order(keys) == [stream._handle.job.id.encode()]
            del stream
            await asyncio.sleep(0.5)  # the release runs as a task of the client's loop
            assert fair.order(keys) == []

    asyncio.run(scenario())
