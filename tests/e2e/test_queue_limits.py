"""What happens when no worker keeps up: backpressure, deadlines, dropped jobs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import pytest
import requests

from tests.support.processes import Stack, llama_metric, service_env, start_stack, start_worker, wait_until
from velesio_core.jobs import Job, JobKind, Queue
from velesio_core.queue.fair import FairQueue
from velesio_core.queue.keys import QueueKeys, events_key
from velesio_core.queue.redis_queue import RedisJobQueue


@pytest.fixture
def api_without_worker(redis_server, tiny_model, logs_dir):
    redis_server.client(2).flushdb()
    stack = start_stack(redis_server.url(2), tiny_model, logs_dir, worker=False, name="noworker")
    yield stack
    stack.stop()


@contextlib.contextmanager
def stalled_stack(redis_server, tiny_model, logs_dir, name: str, **settings: str) -> Iterator[Stack]:
    """A stack whose real worker registered its model, then stopped taking jobs (SIGSTOP)."""
    redis_server.client(4).flushdb()
    stack = start_stack(redis_server.url(4), tiny_model, logs_dir, name=name, **settings)
    worker = stack.process(f"{name}-worker").popen
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        yield stack
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        stack.stop()


@pytest.fixture
def stalled_worker(redis_server, tiny_model, logs_dir):
    """A stalled worker's stack whose queue fills at two jobs."""
    with stalled_stack(redis_server, tiny_model, logs_dir, "stalled", QUEUE_CAP="2", JOB_DEADLINE="2") as stack:
        yield stack


def test_health_is_503_until_a_worker_serves_a_model(api_without_worker):
    response = requests.get(api_without_worker.url("/health"), timeout=10)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "unavailable_error"


def test_a_full_queue_is_503_with_retry_after_and_waiting_jobs_time_out(stalled_worker, redis_server):
    stack, queue = stalled_worker, QueueKeys(Queue.LLM.for_model("tiny"))
    waiting: list[requests.Response] = []

    def wait_for_answer() -> None:
        body = {"prompt": "hi", "n_predict": 4}
        waiting.append(requests.post(stack.url("/completion"), json=body, headers=stack.auth, timeout=30))

    clients = [threading.Thread(target=wait_for_answer) for _ in range(2)]
    for client in clients:
        client.start()
    redis = redis_server.client(4)
    fair = FairQueue(redis)
    wait_until(lambda: len(fair.order(queue)) == 2, timeout=10, what="two jobs queued")

    refused = requests.post(stack.url("/completion"), json={"prompt": "hi"}, headers=stack.auth, timeout=10)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "unavailable_error" and "busy" in error["message"]

    for client in clients:
        client.join(timeout=30)
    # Past JOB_DEADLINE with no worker: a clear 503 each, and their jobs are off the queue.
    assert [response.status_code for response in waiting] == [503, 503]
    assert all("no worker started the job" in r.json()["error"]["message"] for r in waiting)
    assert fair.order(queue) == []
    assert redis.hlen(queue.messages_hash) == 0


def test_the_worker_drops_a_job_whose_deadline_passed_unrun(redis_server, tiny_model, logs_dir):
    redis = redis_server.client(3)
    redis.flushdb()
    url = redis_server.url(3)

    async def enqueue_and_walk_away() -> Job:
        queue = RedisJobQueue.from_url(url, queue_cap=10)
        payload = {"prompt": "too late", "n_predict": 64}
        job = Job.create(JobKind.COMPLETION, payload, model="tiny", deadline_s=0.2, timeout_s=60)
        await queue.submit(job)
        await queue.close()
        return job

    job = asyncio.run(enqueue_and_walk_away())
    wait_until(job.expired, timeout=5, what="the job's deadline passing")

    from tests.support.processes import free_port

    llama_port = free_port()
    env = service_env(REDIS_URL=url, MODEL_PATH=str(tiny_model), LLAMA_SLOTS="2", LLAMA_PORT=str(llama_port),
                      LLAMA_SERVER_ARGS="--threads 1", LLAMA_EMBEDDINGS="false")  # fmt: skip
    worker = start_worker(env, logs_dir, "late-worker")
    try:
        queue = QueueKeys(job.queue)
        wait_until(lambda: redis.hlen(queue.messages_hash) == 0, timeout=120, what="the worker taking the job")
        wait_until(lambda: f"dropped job {job.id}" in worker.log(), timeout=10, what="the worker logging the drop")
        # Nothing was generated, and no result was written: only the API's "queued" entry.
        assert llama_metric(f"http://127.0.0.1:{llama_port}", "llamacpp:n_decode_total") == 0
        assert [fields[b"t"] for _, fields in redis.xrange(events_key(job.id))] == [b"queued"]
    finally:
        assert worker.stop() == 0


@pytest.fixture
def busy_stalled_worker(redis_server, tiny_model, logs_dir):
    """A stalled worker's stack with room in the queue for many waiting jobs."""
    with stalled_stack(redis_server, tiny_model, logs_dir, "stalled-many", JOB_DEADLINE="4") as stack:
        yield stack


def test_one_api_process_holds_more_waiting_jobs_than_redis_pys_default_pool(busy_stalled_worker):
    # Each waiting job holds a Redis connection (its XREAD) in the one API process: redis-py's
    # pool stops at 100 unless told otherwise, and the 101st would be "Redis unreachable".
    stack, count = busy_stalled_worker, 130
    answers: list[requests.Response] = []

    def wait_for_answer() -> None:
        body = {"prompt": "hi", "n_predict": 4}
        answers.append(requests.post(stack.url("/completion"), json=body, headers=stack.auth, timeout=60))

    clients = [threading.Thread(target=wait_for_answer) for _ in range(count)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=60)
    assert len(answers) == count
    messages = {response.json()["error"]["message"] for response in answers}
    assert all(response.status_code == 503 for response in answers), messages
    assert all("no worker started the job" in message for message in messages), messages
