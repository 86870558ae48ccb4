"""A worker's metrics: its jobs as the supervisor ends them, and its state read when scraped.

Token counts and speeds come from the final result of each generation, in the neutral result
vocabulary every backend speaks (results.GenerationResult: tokens_evaluated, tokens_predicted,
timings), so a llama.cpp worker and an Ollama worker are measured alike. Images and diffusion
speed come from the final result of each image job the same way (results.ImageResult: its images
and its ``timings``). Both are read defensively: a metric must never fail a job.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from .. import __version__
from ..events import Event, EventType
from ..jobs import Job
from ..settings import SettingsError
from ..supervision import Outcome
from .api import DURATION_BUCKETS_S

#: A job picked at once waits a millisecond; one behind a long queue, minutes.
WAIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: A big model on a CPU makes a few tokens a second; a small one on a GPU, thousands.
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000)
#: SDXL on a CPU takes seconds a step; SD 1.5 at 512x512 on a big GPU makes tens of steps a second.
STEPS_PER_SECOND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250, 1000)

JOBS = Counter(
    "velesio_worker_jobs",
    "Jobs the worker ended, by kind and outcome (ok, invalid, error, cancelled, timeout, shutdown, expired).",
    ["kind", "outcome"],
)
QUEUE_WAIT = Histogram(
    "velesio_queue_wait_seconds",
    "From the API queueing a job to a worker starting it.",
    ["kind", "model"],
    buckets=WAIT_BUCKETS_S,
)
JOB_RUN = Histogram(
    "velesio_job_run_seconds",
    "How long a worker ran a job, from its start to its last event.",
    ["kind", "model"],
    buckets=DURATION_BUCKETS_S,
)
PROMPT_TOKENS = Counter("velesio_worker_prompt_tokens", "Prompt tokens the backend evaluated.", ["model"])
GENERATED_TOKENS = Counter("velesio_worker_generated_tokens", "Tokens the backend generated.", ["model"])
GENERATION_SPEED = Histogram(
    "velesio_worker_generation_tokens_per_second",
    "Each generation's decoding speed as its backend timed it (prompt processing excluded).",
    ["model"],
    buckets=TOKENS_PER_SECOND_BUCKETS,
)
IMAGES = Counter(
    "velesio_worker_images",
    "Images the worker's image pipeline made and answered with, by job kind (txt2img, img2img) and checkpoint.",
    ["kind", "checkpoint"],
)
DIFFUSION_SPEED = Histogram(
    "velesio_worker_diffusion_steps_per_second",
    "Each image job's denoising speed: steps run (a step denoises the whole batch) per second of diffusion.",
    ["checkpoint"],
    buckets=STEPS_PER_SECOND_BUCKETS,
)
HEARTBEAT = Gauge(
    "velesio_worker_heartbeat_timestamp_seconds", "When the worker last refreshed its card in the registry (Unix time)."
)


class JobMetrics:
    """The supervisor's observer (see supervision.JobObserver): counts what each job did."""

    def job_started(self, job: Job, waited_s: float) -> None:
        QUEUE_WAIT.labels(job.kind.value, job.model).observe(max(0.0, waited_s))

    def job_ended(self, job: Job, outcome: Outcome, ran_s: float | None, final: Event | None) -> None:
        JOBS.labels(job.kind.value, outcome.value).inc()
        if ran_s is None:
            return
        JOB_RUN.labels(job.kind.value, job.model).observe(ran_s)
        if outcome is not Outcome.OK or final is None or final.type is not EventType.RESULT:
            return
        if job.kind.holds_generation_slot:
            _count_tokens(job.model, final)
        elif job.kind.makes_images:
            _count_images(job.kind.value, final)


def _count_tokens(model: str, final: Event) -> None:
    result = orjson.loads(final.data)
    if not isinstance(result, dict):
        return
    prompt, generated = result.get("tokens_evaluated"), result.get("tokens_predicted")
    if isinstance(prompt, int) and prompt > 0:
        PROMPT_TOKENS.labels(model).inc(prompt)
    if isinstance(generated, int) and generated > 0:
        GENERATED_TOKENS.labels(model).inc(generated)
    timings = result.get("timings") or {}
    predicted_n, predicted_ms = timings.get("predicted_n"), timings.get("predicted_ms")
    if isinstance(predicted_n, int) and predicted_n > 0 and isinstance(predicted_ms, int | float) and predicted_ms > 0:
        GENERATION_SPEED.labels(model).observe(predicted_n / predicted_ms * 1000)


def _count_images(kind: str, final: Event) -> None:
    result = orjson.loads(final.data)
    if not isinstance(result, dict):
        return
    checkpoint = str(result.get("sd_model_name") or "")
    images = result.get("images")
    if isinstance(images, list) and images:
        IMAGES.labels(kind, checkpoint).inc(len(images))
    timings = result.get("timings") or {}
    steps, diffusion_ms = timings.get("steps"), timings.get("diffusion_ms")
    if isinstance(steps, int) and steps > 0 and isinstance(diffusion_ms, int | float) and diffusion_ms > 0:
        DIFFUSION_SPEED.labels(checkpoint).observe(steps / diffusion_ms * 1000)


@dataclass(frozen=True)
class BackendState:
    """One backend of a worker (an LLM's, an image pipeline), as its state collector reads it."""

    name: str
    healthy: Callable[[], bool]
    restarts: Callable[[], int]


@dataclass(eq=False)  # a collector is registered by identity
class WorkerState:
    """What a worker's state collector reads at each scrape."""

    worker_id: str
    backends: list[BackendState]
    #: Jobs the worker runs at once: its LLM's generation slots, plus one per image pipeline.
    slots: int
    busy_slots: Callable[[], int]

    def describe(self) -> list[Metric]:
        # Nothing to check up front: collecting here would run a backend health check.
        return []

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("velesio_worker", "The worker's identity.")
        names = "+".join(backend.name for backend in self.backends) or "none"
        info.add_metric([], {"worker_id": self.worker_id, "backend": names, "version": __version__})
        yield info
        yield GaugeMetricFamily(
            "velesio_worker_slots",
            "Generations the worker runs at once (an image pipeline counts one).",
            value=self.slots,
        )
        yield GaugeMetricFamily("velesio_worker_busy_slots", "Generations running now.", value=self.busy_slots())
        up = GaugeMetricFamily(
            "velesio_worker_backend_up", "Whether the worker's backend answers its health check.", labels=["backend"]
        )
        restarts = CounterMetricFamily(
            "velesio_worker_backend_restarts", "Times the worker restarted its backend's processes.", labels=["backend"]
        )
        for backend in self.backends:
            up.add_metric([backend.name], 1 if backend.healthy() else 0)
            restarts.add_metric([backend.name], backend.restarts())
        yield up
        yield restarts


def serve_worker_metrics(state: WorkerState, host: str, port: int) -> Callable[[], None]:
    """Serve the worker's metrics (and ``state``) on host:port; returns a function that stops."""
    # A `_created` series per counter and histogram doubles what Prometheus stores, for nothing
    # any board reads (the API's multiprocess exposition has none either).
    disable_created_metrics()
    REGISTRY.register(state)
    try:
        server, _thread = start_http_server(port, host)
    except OSError as error:
        REGISTRY.unregister(state)
        raise _unusable_port(host, port, error) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        REGISTRY.unregister(state)

    return stop


def check_metrics_port(host: str, port: int) -> None:
    """Fail with one clear line before anything starts when host:port cannot serve metrics (a
    process that serves them only later, after forking, could not say so as plainly)."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise _unusable_port(host, port, error) from None


def _unusable_port(host: str, port: int, error: OSError) -> SettingsError:
    return SettingsError(
        "METRICS_PORT", f"cannot serve metrics on {host}:{port} ({error.strerror})",
        "set METRICS_PORT to a free port (each worker on a machine needs its own), or METRICS=false",
    )  # fmt: skip
