"""velesio's own metrics, scraped from a real API (two gunicorn processes) and a real worker while
real clients use them. Every expected figure comes from what the clients saw, never from the code
under test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import ollama
import openai
import orjson
import pytest
import requests

from tests.support.llmunity import post_chunks
from tests.support.metrics import Scrape, scrape
from tests.support.processes import start_stack, wait_until

LONG = {"n_predict": 3000, "ignore_eos": True}


@pytest.fixture(scope="module")
def observed(redis_server, tiny_model, logs_dir):
    redis_server.client(8).flushdb()
    running = start_stack(redis_server.url(8), tiny_model, logs_dir, name="observed", API_WORKERS="2",
                          LLAMA_SLOTS="2", QUEUE_CAP="2", JOB_DEADLINE="2", LLAMA_EMBEDDINGS="false")  # fmt: skip
    yield running
    running.stop()


def api(stack):
    return scrape(stack.url("/metrics"), stack.auth)


def worker(stack):
    return scrape(stack.worker_metrics_url)


def grew(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def llama_server_pid(stack) -> int:
    port = stack.llama_url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if (
                    args[0].endswith(b"llama-server")
                    and b"--port" in args
                    and args[args.index(b"--port") + 1] == port.encode()
                ):
                    return int(entry.name)
    raise LookupError(f"no llama-server on port {port}")


def test_metrics_want_a_token_and_count_the_failures(observed):
    before = api(observed)
    refused = requests.get(observed.url("/metrics"), timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    bad = requests.post(observed.url("/v1/chat/completions"), json={}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    answer = requests.get(observed.url("/metrics"), headers=observed.auth, timeout=10)
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = api(observed)
    failures = "velesio_api_auth_failures_total"
    assert after.value(failures, dialect="llamacpp") - before.value(failures, dialect="llamacpp") == 1
    assert after.value(failures, dialect="openai") - before.value(failures, dialect="openai") == 1


def test_requests_are_added_up_across_the_api_processes(observed):
    counted = {"route": "/tokenize", "method": "POST", "status": "200"}
    before = api(observed).value("velesio_api_requests_total", **counted)
    for _ in range(30):
        # A fresh connection each time, so that both gunicorn processes get some.
        assert requests.post(observed.url("/tokenize"), json={"content": "hi"}, headers=observed.auth).ok
    # Whichever process answers a scrape, it reports every process's requests.
    for _ in range(6):
        assert api(observed).value("velesio_api_requests_total", **counted) - before == 30


def test_tokens_and_jobs_match_what_the_clients_were_told(observed):
    before_api, before_worker = api(observed), worker(observed)
    prompt_tokens = generated_tokens = 0
    for stream in (False, True, False, True):
        body = {"prompt": "once upon a time", "n_predict": 7 + stream, "stream": stream}
        response = requests.post(observed.url("/completion"), json=body, headers=observed.auth, timeout=30)
        final = json.loads(response.text.strip().splitlines()[-1].removeprefix("data: ")) if stream else response.json()
        prompt_tokens += final["tokens_evaluated"]
        generated_tokens += final["tokens_predicted"]
    with openai.OpenAI(base_url=observed.url("/v1"), api_key=observed.token, max_retries=0) as sdk:
        chat = sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    prompt_tokens += chat.usage.prompt_tokens
    generated_tokens += chat.usage.completion_tokens
    with ollama.Client(host=observed.base_url, headers=observed.auth) as sdk:
        said = sdk.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 6})
    prompt_tokens += said.prompt_eval_count
    generated_tokens += said.eval_count

    after_api, after_worker = api(observed), worker(observed)
    assert grew(before_worker, after_worker, "velesio_worker_prompt_tokens_total", model="tiny") == prompt_tokens
    assert grew(before_worker, after_worker, "velesio_worker_generated_tokens_total", model="tiny") == generated_tokens
    assert grew(before_worker, after_worker, "velesio_worker_jobs_total", kind="completion", outcome="ok") == 4
    assert grew(before_worker, after_worker, "velesio_worker_jobs_total", kind="chat", outcome="ok") == 2
    assert grew(before_worker, after_worker, "velesio_queue_wait_seconds_count", model="tiny") == 6
    assert grew(before_worker, after_worker, "velesio_job_run_seconds_count", model="tiny") == 6
    assert grew(before_worker, after_worker, "velesio_worker_generation_tokens_per_second_count", model="tiny") == 6
    assert grew(before_api, after_api, "velesio_api_time_to_first_token_seconds_count", dialect="llamacpp") == 2
    assert grew(before_api, after_api, "velesio_api_request_duration_seconds_count", route="/completion",
                stream="true") == 2  # fmt: skip
    assert grew(before_api, after_api, "velesio_api_requests_total", dialect="ollama", route="/api/chat") == 1


def test_worker_state_and_queue_state(observed):
    state = worker(observed)
    assert state.value("velesio_worker_slots") == 2 and state.value("velesio_worker_busy_slots") == 0
    assert state.value("velesio_worker_backend_up", backend="llamacpp") == 1
    assert state.has("velesio_worker_info", backend="llamacpp")
    assert abs(time.time() - state.value("velesio_worker_heartbeat_timestamp_seconds")) < 10
    assert not any(name.endswith("_created") for name, _, _ in state.samples)
    seen = api(observed)
    assert seen.value("velesio_workers", model="tiny") == 1 and seen.value("velesio_redis_up") == 1
    assert seen.value("velesio_queue_waiting_jobs", model="tiny", kind="llm") == 0


def test_unmatched_paths_never_become_labels(observed):
    requests.get(observed.url("/v1/scanner-probe-4711"), headers=observed.auth, timeout=10)
    seen = api(observed)
    assert "scanner-probe-4711" not in seen.text
    assert seen.value("velesio_api_requests_total", dialect="openai", route="other", status="404") >= 1


def test_a_refused_prompt_is_an_invalid_job(observed):
    before = worker(observed).value("velesio_worker_jobs_total", kind="completion", outcome="invalid")
    response = requests.post(observed.url("/completion"), json={"prompt": "hello " * 6000, "n_predict": 4},
                             headers=observed.auth, timeout=60)  # fmt: skip
    assert response.status_code == 400
    assert worker(observed).value("velesio_worker_jobs_total", kind="completion", outcome="invalid") - before == 1


def test_a_client_that_leaves_mid_stream_is_a_cancelled_job(observed):
    before_api, before_worker = api(observed), worker(observed)
    body = orjson.dumps({"prompt": "a tale", "stream": True, **LONG})
    status, _, chunks = post_chunks(observed.url("/completion"), body, observed.auth)
    assert status == 200
    next(chunks)
    chunks.close()  # closes the socket: the client is gone
    cancelled = {"kind": "completion", "outcome": "cancelled"}
    wait_until(lambda: grew(before_worker, worker(observed), "velesio_worker_jobs_total", **cancelled) == 1,
               timeout=10, what="the worker counting a cancelled job")  # fmt: skip
    assert grew(before_api, api(observed), "velesio_queue_cancelled_jobs_total", model="tiny") == 1
    # The request's task may still be unwinding from its Redis read when the worker has stopped.
    wait_until(lambda: api(observed).value("velesio_api_streams_in_flight") == 0, timeout=5,
               what="the stream leaving the in-flight gauge")  # fmt: skip


def test_an_open_stream_is_in_flight(observed):
    stalled = observed.process("observed-worker").popen
    status, _, chunks = post_chunks(observed.url("/completion"), orjson.dumps({"prompt": "a tale", "stream": True,
                                    **LONG}), observed.auth)  # fmt: skip
    assert status == 200
    next(chunks)
    os.kill(stalled.pid, signal.SIGSTOP)  # no more tokens reach the API
    try:
        assert api(observed).value("velesio_api_streams_in_flight", dialect="llamacpp") == 1
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    assert len(list(chunks)) > 10  # the rest of the stream
    assert api(observed).value("velesio_api_streams_in_flight") == 0


def test_backpressure_refusals_queue_depth_and_expiry(observed):
    stalled = observed.process("observed-worker").popen
    before = api(observed)
    waiting: list[requests.Response] = []

    def wait_for_answer() -> None:
        waiting.append(requests.post(observed.url("/completion"), json={"prompt": "hi", "n_predict": 4},
                                     headers=observed.auth, timeout=30))  # fmt: skip

    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        clients = [threading.Thread(target=wait_for_answer) for _ in range(2)]
        for client in clients:
            client.start()
        wait_until(lambda: api(observed).value("velesio_queue_waiting_jobs", model="tiny", kind="llm") == 2,
                   timeout=10, what="two jobs waiting")  # fmt: skip
        time.sleep(0.5)
        # Waited at least the sleep, and not more than the whole test has run.
        assert 0.5 <= api(observed).value("velesio_queue_oldest_job_age_seconds", model="tiny", kind="llm") < 60
        refused = requests.post(observed.url("/completion"), json={"prompt": "hi"}, headers=observed.auth, timeout=10)
        assert refused.status_code == 503
        for client in clients:
            client.join(timeout=30)
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    assert [response.status_code for response in waiting] == [503, 503]
    after = api(observed)
    rejected, expired = "velesio_queue_rejected_jobs_total", "velesio_queue_expired_jobs_total"
    assert after.value(rejected, model="tiny") - before.value(rejected, model="tiny") == 1
    assert after.value(expired, model="tiny") - before.value(expired, model="tiny") == 2
    assert after.value("velesio_queue_waiting_jobs", model="tiny", kind="llm") == 0
    status_503 = {"route": "/completion", "status": "503"}
    assert after.value("velesio_api_requests_total", **status_503) - before.value(
        "velesio_api_requests_total", **status_503) == 3  # fmt: skip


def test_a_hung_then_dead_backend_is_seen_and_its_restart_counted(observed):
    """Last in this module: it kills the stack's llama-server."""
    llama = llama_server_pid(observed)
    os.kill(llama, signal.SIGSTOP)
    answers: list[requests.Response] = []
    body = {"prompt": "hi", "n_predict": 4}
    ask = lambda: answers.append(requests.post(observed.url("/completion"), json=body, headers=observed.auth))  # noqa: E731
    client = threading.Thread(target=ask)
    client.start()
    try:
        # The job holds a slot, waiting on a llama-server that answers nothing, health checks included.
        wait_until(lambda: worker(observed).value("velesio_worker_busy_slots") == 1, timeout=20, what="a busy slot")
        assert worker(observed).value("velesio_worker_backend_up", backend="llamacpp") == 0
    finally:
        os.kill(llama, signal.SIGKILL)
    client.join(timeout=60)
    assert answers[0].status_code >= 500

    def restarted() -> bool:
        state = worker(observed)
        return (
            state.value("velesio_worker_backend_restarts_total") == 1 and state.value("velesio_worker_backend_up") == 1
        )

    wait_until(restarted, timeout=60, what="llama-server restarting")
    assert worker(observed).value("velesio_worker_busy_slots") == 0
