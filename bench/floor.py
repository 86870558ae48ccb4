"""The floor under the CPU targets: what the parts velesio is built from spend per job and per
token when they do nothing but the least a queueing gateway must, measured in the same run and on
the same machine as the gateway's own figures (the CPU section).

- API: bench/floor_app.py, a Falcon app on gunicorn's asgi worker (uvloop), as velesio's API runs,
  with no velesio code: JSON in and out, and the two Redis round trips of a queued job.
- Worker: one Python thread that takes a job with one Redis script call, asks llama-server for the
  answer over one keep-alive ``http.client`` connection, and writes it back with another.
- Per token: the app's 128-event stream (one body write per event), and the thread reading
  llama-server's 128-token stream as it arrives.

If the floor alone is over a target, no change inside velesio's Python can meet it on this stack;
docs/decisions.md ("Where a job's CPU goes") says what would.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.cpu import CLIENTS, STREAM
from bench.llm import BODY
from bench.procs import children, cpu_seconds
from bench.report import Section
from bench.wrk import wrk
from tests.support.processes import RedisServer, free_port, spawn, wait_until

ROOT = Path(__file__).resolve().parents[1]
_TAKE = "return redis.call('lpop', KEYS[1])"
_ANSWER = "return redis.call('xadd', KEYS[1], 'MAXLEN', '1', '*', 'd', ARGV[1])"


def _gunicorn_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in [pid, *children(pid)])


def _api_floor(redis: RedisServer, logs: Path, seconds: float) -> tuple[float, float, float, float]:
    """CPU per request of the bare app's /answer, of its /queued (and Redis's for it), and per
    event of its /stream: (answer, queued, queued's Redis, stream event), in seconds."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "bench.floor_app:app", "-k", "asgi", "-w", "1",
               "-b", f"127.0.0.1:{port}", "--keep-alive", "75", "--no-control-socket"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FLOOR_REDIS_URL": redis.url(7)}
    app = spawn("floor-api", command, env=env, logs=logs)
    base = f"http://127.0.0.1:{port}"
    redis_pid = redis.process.popen.pid
    try:
        wait_until(lambda: _posts(base), timeout=30, what="the floor app answering")
        per: list[float] = []
        for path in ("/answer", "/queued", "/stream"):
            body = BODY if path != "/stream" else STREAM
            wrk(base + path, body, seconds=1, connections=CLIENTS)  # warm up
            before, redis_before = _gunicorn_cpu(app.popen.pid), cpu_seconds(redis_pid)
            run = wrk(base + path, body, seconds=seconds, connections=CLIENTS)
            spent, redis_spent = _gunicorn_cpu(app.popen.pid) - before, cpu_seconds(redis_pid) - redis_before
            per.append(spent / run.requests)
            if path == "/queued":
                per.append(redis_spent / run.requests)
        answer, queued, queued_redis, stream = per
        return answer, queued, queued_redis, stream / 128
    finally:
        app.stop()


def _posts(base: str) -> bool:
    parts = urlsplit(base)
    try:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        connection.request("POST", "/answer", body=b"{}", headers={"Content-Type": "application/json"})
        return connection.getresponse().status == 200
    except OSError:
        return False


def _worker_floor(llama_url: str, redis: RedisServer, jobs: int) -> tuple[float, float, float]:
    """CPU of one thread per job (take, ask llama-server, answer), Redis's per job, and the
    thread's per token of a 128-token stream read as it arrives: in seconds."""
    client = redis.client(7)
    take, answer = client.register_script(_TAKE), client.register_script(_ANSWER)
    parts = urlsplit(llama_url)
    llama = http.client.HTTPConnection(parts.hostname, parts.port)
    body = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}

    def ask(payload: bytes) -> http.client.HTTPResponse:
        nonlocal llama
        try:
            llama.request("POST", "/completion", body=payload, headers=headers)
            return llama.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # llama-server closes a connection after 100 requests, and after every stream.
            llama.close()
            llama = http.client.HTTPConnection(parts.hostname, parts.port)
            llama.request("POST", "/completion", body=payload, headers=headers)
            return llama.getresponse()

    def one_job() -> None:
        client.rpush("floor:jobs", body)  # the API's side, not counted below
        started = time.thread_time()
        take(keys=["floor:jobs"])
        result = ask(body).read()
        answer(keys=["floor:answers"], args=[result])
        spent.append(time.thread_time() - started)

    spent: list[float] = []
    for _ in range(20):
        one_job()
    spent.clear()
    redis_before = cpu_seconds(redis.process.popen.pid)
    for _ in range(jobs):
        one_job()
    redis_per_job = (cpu_seconds(redis.process.popen.pid) - redis_before) / jobs
    per_job = sum(spent) / jobs

    stream = json.dumps(STREAM).encode()
    tokens, thread_spent = 0, 0.0
    for _ in range(max(5, jobs // 50)):
        started = time.thread_time()
        response = ask(stream)
        # Whatever has arrived, in one read: tokens that came together are parsed together.
        while block := response.read1(65536):
            tokens += block.count(b"data: ")
        thread_spent += time.thread_time() - started
    llama.close()
    client.close()
    return per_job, redis_per_job, thread_spent / tokens


def floor_cpu(section: Section, llama_url: str, redis: RedisServer, logs: Path, seconds: float, *,
              gateway_per_job: float, gateway_per_token: float) -> None:  # fmt: skip
    """The floor's rows, each beside the gateway's own figure of the same run."""
    answer, queued, queued_redis, api_event = _api_floor(redis, logs, seconds)
    worker_job, worker_redis, worker_token = _worker_floor(llama_url, redis, 300 if seconds < 10 else 1000)
    per_job = queued + queued_redis + worker_job + worker_redis
    per_token = api_event + worker_token
    section.add("floor a. bare Falcon app on gunicorn (asgi, uvloop), JSON in and out: CPU per request",
                f"{answer * 1000:.3f} ms")  # fmt: skip
    section.add("floor a. the same with a queue's two Redis round trips: app / Redis per request",
                f"{queued * 1000:.3f} / {queued_redis * 1000:.3f} ms")  # fmt: skip
    section.add("floor a. one Python thread per job: take it (Redis), ask llama-server, answer (Redis): "
                "thread / Redis per job", f"{worker_job * 1000:.3f} / {worker_redis * 1000:.3f} ms")  # fmt: skip
    section.add("floor a. **least gateway CPU per job** on this stack (sum of the two above)",
                f"{per_job * 1000:.3f} ms (velesio spends {gateway_per_job / per_job:.1f} times as much)", "≤ 0.6 ms",
                per_job <= 0.0006)  # fmt: skip
    section.add("floor b. per relayed token: the app writing one SSE event / a thread reading one from llama-server",
                f"{api_event * 1e6:.1f} / {worker_token * 1e6:.1f} µs")  # fmt: skip
    section.add("floor b. **least gateway CPU per relayed token** on this stack",
                f"{per_token * 1e6:.1f} µs (velesio spends {gateway_per_token / per_token:.1f} times as much)",
                "≤ 15 µs", per_token <= 15e-6)  # fmt: skip
    section.notes += [
        "The floor rows (bench/floor.py) measure the parts velesio is built from doing only the least a",
        "queueing gateway must, in the same run: a bare Falcon app on gunicorn's asgi worker with uvloop",
        "(bench/floor_app.py: JSON in and out, then the same with one script call and one XREAD), and one",
        "Python thread that takes a job with a script call, asks llama-server over a keep-alive connection",
        "and writes the answer with another; per token, the app writing 128 one-token SSE events and the",
        "thread reading llama-server's 128-token stream as it arrives. A floor over a target means no change",
        "inside velesio's Python meets it on this stack (docs/decisions.md, \"Where a job's CPU goes\").",
    ]
