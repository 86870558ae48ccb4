"""``make bench``: velesio against the components it fronts, side by side in one run.

Starts a Redis, a worker (whose llama-server also listens on a TCP port, for the direct side of
every comparison) and the API, all on this machine, then writes bench/RESULTS.md. For Stable
Diffusion, a second worker runs the tiny pipeline and this process loads the same checkpoint.
``--sections sd`` runs the image part only and updates just its section of RESULTS.md (``llm``,
``metrics``, ``keys`` or ``queue`` run the text part, which measures all four of its sections).
``cpu``, ``scale`` and ``peers`` run under load on a stack of their own, each alone or together;
``peers`` installs LiteLLM and Portkey's gateway under ~/.cache/velesio-bench the first time.
``fairness`` needs only Redis: a worker of its own with a sleeping actor.
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

from bench import library, llm, peers, pickup, quote, scale, sd  # noqa: E402
from bench.cpu import gateway_cpu  # noqa: E402
from bench.fairness import fairness  # noqa: E402
from bench.floor import floor_cpu  # noqa: E402
from bench.keys_cost import keys_cost  # noqa: E402
from bench.metrics_cost import metrics_cost  # noqa: E402
from bench.report import Section, markdown, replace_sections  # noqa: E402
from tests.support.processes import RedisServer, start_stack  # noqa: E402
from velesio_core import machine  # noqa: E402
from velesio_core.settings import Settings  # noqa: E402
from velesio_core.tiny_model import write_tiny_model  # noqa: E402

#: `make up`'s own configuration: every count the machine decides (velesio_core.machine) and
#: the settings' defaults, over the test stacks' tuned ones (tests/support/processes.start_stack).
DEFAULTS = {"LLAMA_SLOTS": "", "LLAMA_SERVER_ARGS": "", "API_WORKERS": "", "LLAMA_THREADS": ""}
SECTIONS = ("llm", "metrics", "keys", "queue", "sd", "cpu", "scale", "peers", "fairness")
TEXT_SECTIONS = {"llm", "metrics", "keys", "queue"}
#: The sections measured under load on a stack of their own (each can run alone).
LOAD_SECTIONS = ("cpu", "scale", "peers")
#: Stored API keys on, as `make up` runs: the keys section measures their cost on this stack.
KEY_SECRET = "bench-key-secret-" + "x" * 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"some of {', '.join(SECTIONS)}")
    args = parser.parse_args()
    chosen = set(args.sections.split(","))
    if not chosen <= set(SECTIONS):
        sys.exit(f"bench: --sections takes {', '.join(SECTIONS)}")
    if chosen & (TEXT_SECTIONS | {"cpu", "peers"}) and shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (make bench installs it)")
    samples, wrk_seconds, rounds, pickups = (200, 3, 1, 10) if args.quick else (2000, 10, 3, 60)

    work = Path(tempfile.mkdtemp(prefix="velesio-bench-"))
    logs = work / "logs"
    redis = RedisServer.start(logs)
    sections: list[Section] = []
    try:
        if chosen & TEXT_SECTIONS:
            sections += text_sections(work, logs, redis, args.quick, samples, wrk_seconds, rounds, pickups)
        if "sd" in chosen:
            sections.append(image_section(work, logs, redis, 20 if args.quick else 100))
        if chosen & set(LOAD_SECTIONS):
            sections += load_sections(work, logs, redis, [name for name in LOAD_SECTIONS if name in chosen], args.quick)
        if "fairness" in chosen:
            fair_section = Section("Fair queue: a flooding key against the others, weights, and the lanes' cost")
            fairness(fair_section, redis.url(6), args.quick)
            sections.append(fair_section)
    finally:
        redis.stop()

    defaults = Settings.from_env({})
    setup = [
        "tiny llama GGUF (velesio_core.tiny_model: 64-dim, 2 layers), so the gateway's own cost dominates",
        f"the default configuration, as `make up` runs it on this machine ({machine.usable_cpus()} usable CPUs): "
        f"llama-server with {defaults.llama_slots} slots and `--threads {defaults.llama_threads}` "
        f"(LLAMA_THREADS from the machine), {defaults.api_workers} API process(es) (gunicorn asgi worker, uvloop), "
        "one worker process, Redis 7 on TCP, all on 127.0.0.1, sharing the cores with the load generator",
        "latency: a keep-alive `http.client` connection per side; throughput: `wrk -t 2 -c 8`",
        "images: velesio_core.tiny_pipeline as a single .safetensors file (CPU, fp32); a worker with only "
        "RUN_SD, and the same file loaded the same way in the benchmark process for the direct side",
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if chosen == set(SECTIONS) or not args.output.exists():
        report = markdown(sections, when=when, setup=setup)
    else:
        report = replace_sections(args.output.read_text(), sections, when=when)
    args.output.write_text(report.rstrip("\n") + "\n")
    if args.output == quote.RESULTS:
        quote.main()
    print(report)
    shutil.rmtree(work, ignore_errors=True)


def image_section(work: Path, logs: Path, redis: RedisServer, samples: int) -> Section:
    from tests.support.sd import CHECKPOINT_FILE
    from velesio_core.tiny_pipeline import write_tiny_checkpoint

    models, configs = work / "sd-models", work / "sd-configs"
    checkpoint = write_tiny_checkpoint(models / "image" / "models" / "Stable-diffusion" / CHECKPOINT_FILE, configs)
    stack = start_stack(redis.url(3), None, logs, name="bench-sd", RUN_SD="true", MODELS_DIR=str(models),
                        SD_CONFIGS_DIR=str(configs))  # fmt: skip
    section = Section("Images: AUTOMATIC1111's txt2img through velesio vs the same pipeline called directly")
    try:
        print("bench: txt2img through velesio vs direct ...", flush=True)
        sd.txt2img_ratio(section, stack.base_url, stack.basic, checkpoint, configs, samples)
    finally:
        stack.stop()
    section.notes += [
        "Direct is `pipeline(prompt, ...)` on the same checkpoint, loaded the same way, warm, in the benchmark",
        "process; velesio's side adds the HTTP request, validation, Redis both ways, the worker, and the PNG",
        "(with its infotext) in base64 JSON. The two sides alternate request by request. The tiny model makes",
        "a 64x64 image in tens of milliseconds, so that row shows the gateway's own cost; 512x512 in 20 steps",
        "is the size of a real request, where a real SD 1.5 model takes seconds on a GPU.",
    ]
    return section


def load_sections(work: Path, logs: Path, redis: RedisServer, chosen: list[str], quick: bool) -> list[Section]:
    """``chosen`` of the sections under load, on one stack of the default configuration."""
    model = write_tiny_model(work / "tiny-load.gguf")
    stack = start_stack(redis.url(5), model, logs, name="bench-load", KEY_SECRET=KEY_SECRET, **DEFAULTS)
    settings = Settings.from_env(stack.env)
    sections = []
    try:
        if "cpu" in chosen:
            section = Section("CPU: what the gateway's processes spend per job and per relayed token")
            print("bench: gateway CPU per job and per token ...", flush=True)
            per_job, per_token = gateway_cpu(section, stack, redis, 3 if quick else 20)
            print("bench: the floor of the stack's parts ...", flush=True)
            floor_cpu(section, stack.llama_url, redis, logs, 3 if quick else 10, gateway_per_job=per_job,
                      gateway_per_token=per_token)  # fmt: skip
            sections.append(section)
        if "scale" in chosen:
            section = Section("Scale: concurrent token streams, through velesio and directly")
            levels = scale.QUICK_LEVELS if quick else scale.LEVELS
            scale.sweep(section, stack, redis, levels, 2 if quick else 10, settings.llama_slots)
            sections.append(section)
        if "peers" in chosen:
            section = Section("Peers: LiteLLM's proxy and Portkey's gateway over the same llama-server")
            peers.compare(section, work, stack, settings.api_workers, 2 if quick else 5, 1 if quick else 3)
            sections.append(section)
    finally:
        stack.stop()
    return sections


def text_sections(work, logs, redis, quick, samples, wrk_seconds, rounds, pickups) -> list[Section]:
    model = write_tiny_model(work / "tiny.gguf")
    stack = None
    try:
        stack = start_stack(
            redis.url(0),
            model,
            logs,
            name="bench",
            KEY_SECRET=KEY_SECRET,
            **DEFAULTS,
        )
        direct = stack.llama_url
        print(f"bench: stack up; logs in {logs}", flush=True)

        llm_section = Section("LLM: llama.cpp dialect through velesio vs llama-server directly")
        print("bench: latency and time to first token ...", flush=True)
        llm.latency(llm_section, direct, stack.base_url, stack.auth, samples)
        print("bench: chat latency (OpenAI, Ollama) ...", flush=True)
        llm.chat_latency(llm_section, direct, stack.base_url, stack.auth, "tiny", samples // 2)
        print("bench: the Python client (velesio_core.Client) ...", flush=True)
        library.client_latency(llm_section, direct, stack.base_url, stack.auth, stack.env["REDIS_URL"], samples // 2)
        print("bench: throughput ...", flush=True)
        llm.throughput(llm_section, direct, stack.base_url, stack.token, wrk_seconds, rounds)
        print("bench: llama.cpp's own thread count ...", flush=True)
        own = start_stack(redis.url(4), model, logs, name="bench-own-threads", **(DEFAULTS | {"LLAMA_THREADS": "0"}))
        try:
            label = "c. the same (8 tokens) with llama.cpp's own thread count (LLAMA_THREADS=0)"
            llm.throughput_with(llm_section, label, own.llama_url, own.base_url, own.token, wrk_seconds, rounds)
        finally:
            own.stop()
        print("bench: cancellation ...", flush=True)
        llm.cancellation(llm_section, direct, stack.base_url, stack.auth, 30 if not quick else 5)

        metrics_section = Section("Metrics: what velesio's own Prometheus metrics cost")
        print("bench: metrics on vs off ...", flush=True)
        unmeasured = start_stack(redis.url(2), model, logs, name="bench-nometrics", METRICS="false", **DEFAULTS)
        try:
            metrics_cost(metrics_section, stack, unmeasured, samples)
        finally:
            unmeasured.stop()

        keys_section = Section("Keys: what a stored API key's checks and lease cost")
        print("bench: API_TOKENS vs stored keys ...", flush=True)
        keys_cost(keys_section, stack, samples)

        queue_section = Section("Queue: picking up a job after an idle second")
        print("bench: idle pickup (one message per idle second) ...", flush=True)
        pickup.idle_pickup(queue_section, redis.url(1), pickups)
        pickup.idle_round_trip(queue_section, redis.url(0), "tiny", pickups // 2)
    finally:
        if stack is not None:
            stack.stop()

    llm_section.notes += [
        "Direct means the same llama-server the worker uses (it also listens on a TCP port for this), asked",
        "the same request by the same client; velesio's side goes client → API (gunicorn, Falcon) → Redis →",
        "worker (Dramatiq) → llama-server and back. Sequential figures alternate the two sides request by",
        "request, so drift on the shared machine hits both alike.",
    ]
    keys_section.notes += [
        "Each key has every limit set (rpm, tpm, parallel, tokens and images per day), high enough never",
        "to refuse: one admission script and one release script per job, on the same Redis as the queue.",
    ]
    return [llm_section, metrics_section, keys_section, queue_section]


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"bench: done in {time.monotonic() - started:.0f} s")
