"""The llama-server supervisor and backend against a real llama-server with the tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.support.processes import wait_until
from velesio_core.backends.llamacpp.backend import LlamaServerBackend
from velesio_core.backends.llamacpp.process import LlamaServerFailed, LlamaServerProcess, find_llama_server
from velesio_core.cancellation import Cancellation, JobCancelled, Reason
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import EventType


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def llama(tiny_model, tmp_path):
    process = LlamaServerProcess(
        binary=find_llama_server(None), model=tiny_model, socket_path=tmp_path / "llama.sock", slots=2,
        ctx_per_slot=4096, extra_args=("--threads", "1"),
    )  # fmt: skip
    process.start()
    yield process
    process.stop()


@pytest.fixture
def backend(llama):
    backend = LlamaServerBackend(llama.url)
    yield backend
    backend.close()


def test_the_supervisor_restarts_a_llama_server_that_died(llama, backend):
    first = llama.pid
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: llama.restarts == 1 and backend.healthy(), timeout=60, what="llama-server restarting")
    assert llama.pid != first and not alive(first)
    assert backend.tokenize({"content": "hi"}, model="tiny", cancellation=Cancellation())["tokens"]


def test_a_model_that_does_not_load_is_reported_with_llama_servers_words(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    process = LlamaServerProcess(binary=find_llama_server(None), model=broken, socket_path=tmp_path / "x.sock",
                                 slots=1, ctx_per_slot=512)  # fmt: skip
    with pytest.raises(LlamaServerFailed) as raised:
        process.start()
    assert "exited with code" in str(raised.value) and "Its last output" in str(raised.value)


def test_llama_server_dies_with_a_worker_killed_outright(tiny_model, tmp_path):
    # The supervisor's process gets SIGKILL (no cleanup runs); the kernel ends llama-server anyway.
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from velesio_core.backends.llamacpp.process import LlamaServerProcess, find_llama_server
        p = LlamaServerProcess(binary=find_llama_server(None), model=Path({str(tiny_model)!r}),
                               socket_path=Path({str(tmp_path / "k.sock")!r}), slots=1, ctx_per_slot=512)
        p.start()
        print(p.pid, flush=True)
        time.sleep(600)
    """)
    supervisor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    llama_pid = int(supervisor.stdout.readline())
    assert alive(llama_pid)
    supervisor.kill()
    supervisor.wait()
    wait_until(lambda: not alive(llama_pid), timeout=10, what="llama-server following its supervisor")


def events_of(batches):
    return [event for events in batches for event in events]


def test_a_stream_is_llama_servers_chunks_then_one_result(backend):
    events = events_of(backend.complete({"prompt": "hi", "n_predict": 5, "ignore_eos": True}, model="tiny",
                                        stream=True, cancellation=Cancellation()))  # fmt: skip
    assert [event.type for event in events] == [EventType.TOKEN] * 5 + [EventType.RESULT]
    assert events[-1].value()["content"] == "" and events[-1].value()["stop"] is True


def test_tokens_already_received_come_together_and_in_order(backend):
    # While the worker is busy (here: asleep), llama-server goes on writing tokens into the
    # socket; the next read hands them all on at once, for one write to Redis.
    body = {"prompt": "the castle", "n_predict": 40, "temperature": 0, "ignore_eos": True}
    whole = events_of(backend.complete(body, model="tiny", stream=False, cancellation=Cancellation()))
    batches = backend.complete(body, model="tiny", stream=True, cancellation=Cancellation())
    first = next(batches)
    time.sleep(1.0)
    rest = list(batches)
    assert len(rest[0]) > 1, "tokens that had all arrived were handed on one by one"
    events = first + events_of(rest)
    assert [event.type for event in events] == [EventType.TOKEN] * 40 + [EventType.RESULT]
    assert "".join(event.value()["content"] for event in events) == whole[0].value()["content"]


def test_chat_tokens_already_received_come_together(backend):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 30, "temperature": 0}
    batches = backend.chat(body, model="tiny", stream=True, cancellation=Cancellation())
    first = next(batches)
    time.sleep(1.0)
    rest = list(batches)
    assert any(len(events) > 1 for events in rest)
    events = first + events_of(rest)
    assert {event.type for event in events[:-1]} == {EventType.TOKEN} and events[-1].type is EventType.RESULT


def test_a_whole_answer_is_assembled_as_llama_server_would(backend):
    body = {"prompt": "the castle", "n_predict": 9, "temperature": 0, "ignore_eos": True}
    ((event,),) = backend.complete(body, model="tiny", stream=False, cancellation=Cancellation())
    answer = event.value()
    events = events_of(backend.complete(body, model="tiny", stream=True, cancellation=Cancellation()))
    streamed = "".join(event.value()["content"] for event in events)
    assert answer["content"] == streamed and answer["tokens"] == [] and answer["tokens_predicted"] == 9
    with_tokens = next(iter(backend.complete({**body, "return_tokens": True}, model="tiny", stream=False,
                                             cancellation=Cancellation())))[0].value()  # fmt: skip
    assert len(with_tokens["tokens"]) == 9


def test_cancelling_closes_the_request_at_once(backend, llama):
    cancellation = Cancellation()
    events = backend.complete({"prompt": "hi", "n_predict": 3000, "ignore_eos": True}, model="tiny", stream=True,
                              cancellation=cancellation)  # fmt: skip
    next(events)
    threading.Timer(0.05, cancellation.cancel, args=(Reason.CLIENT_LEFT,)).start()
    with pytest.raises(JobCancelled):
        for _ in events:
            pass

    def idle() -> bool:
        return not any(slot["is_processing"] for slot in backend.slots(model="tiny", cancellation=Cancellation()))

    wait_until(idle, timeout=5, what="the slot freeing")


def test_connections_survive_llama_servers_keep_alive_limit(backend):
    # llama-server closes a connection after 100 requests: the pool must reconnect transparently.
    for index in range(250):
        assert backend.tokenize({"content": f"word {index}"}, model="tiny", cancellation=Cancellation())["tokens"]


def test_an_unreachable_server_is_a_503(tmp_path):
    backend = LlamaServerBackend(f"unix://{tmp_path / 'nobody.sock'}")
    with pytest.raises(GatewayError) as raised:
        backend.tokenize({"content": "hi"}, model="tiny", cancellation=Cancellation())
    assert raised.value.kind is ErrorKind.UNAVAILABLE and raised.value.status == 503


def test_llama_servers_own_errors_keep_their_kind(backend):
    with pytest.raises(GatewayError) as raised:
        body = {"prompt": "word " * 5000, "n_predict": 2}
        list(backend.complete(body, model="tiny", stream=True, cancellation=Cancellation()))
    assert raised.value.kind is ErrorKind.EXCEED_CONTEXT_SIZE and raised.value.status == 400


def test_stop_ends_llama_server(tiny_model, tmp_path):
    process = LlamaServerProcess(binary=find_llama_server(None), model=tiny_model, socket_path=tmp_path / "s.sock",
                                 slots=1, ctx_per_slot=512)  # fmt: skip
    process.start()
    pid = process.pid
    started = time.monotonic()
    process.stop()
    assert not alive(pid) and time.monotonic() - started < 10


def test_a_hung_llama_server_ends_its_jobs_with_a_clean_error_and_is_restarted(llama, backend):
    from velesio_core.dispatch import JobDispatcher
    from velesio_core.jobs import Job, JobKind
    from velesio_core.supervision import JobSupervisor

    class Collected:
        def __init__(self) -> None:
            self.events = []

        def emit(self, *events) -> None:
            self.events += events

    supervisor = JobSupervisor(
        JobDispatcher(backend, worker_id="w"), progress_timeout_s=2.0, on_stalled=lambda job: llama.kill_hung()
    )
    stopped = llama.pid
    long_story = {"prompt": "a tale", "n_predict": 100_000, "ignore_eos": True, "stream": True}
    job = Job.create(JobKind.COMPLETION, long_story, model="tiny", stream=True, deadline_s=60, timeout_s=600)
    sink = Collected()
    running = threading.Thread(target=supervisor.execute, args=(job, sink))
    running.start()
    wait_until(lambda: any(event.type is EventType.TOKEN for event in sink.events), timeout=60, what="a first token")
    os.kill(stopped, signal.SIGSTOP)  # a driver hang: the socket stays open, nothing more comes
    try:
        running.join(timeout=30)
        assert not running.is_alive(), "the job waited on the hung llama-server"
        final = sink.events[-1]
        assert final.type is EventType.ERROR
        assert final.value()["code"] == 503 and "JOB_PROGRESS_TIMEOUT" in final.value()["message"]
        wait_until(lambda: llama.restarts == 1 and backend.healthy(), timeout=60, what="llama-server restarting")
        assert not alive(stopped)
    finally:
        if alive(stopped):
            os.kill(stopped, signal.SIGCONT)
    # The worker serves again.
    again = Collected()
    short = Job.create(JobKind.COMPLETION, {"prompt": "hi", "n_predict": 4}, model="tiny", deadline_s=60, timeout_s=60)
    supervisor.execute(short, again)
    assert again.events[-1].type is EventType.RESULT
    supervisor.close()
