"""What a queue worker runs besides Dramatiq: its backends (an LLM's, an image pipeline, or both),
the supervisor that runs jobs on them, the listener that cancels abandoned jobs, and the heartbeat
that keeps its card in the registry."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from velesio_core.backends.base import ModelInfo
from velesio_core.backends.service import LlmService, start_llm_service
from velesio_core.dispatch import JobDispatcher
from velesio_core.errors import GatewayError
from velesio_core.image_board import ImageBoardWriter, RedisImageBoardWriter
from velesio_core.jobs import IMAGE_MODEL, Job, Queue
from velesio_core.metrics.worker import (
    HEARTBEAT,
    BackendState,
    JobMetrics,
    WorkerState,
    serve_worker_metrics,
)
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.queue.reaper import BEAT_S, Liveness, Orphans
from velesio_core.redis_clients import sync_client
from velesio_core.registry import HEARTBEAT_S, CardPublisher, WorkerCard
from velesio_core.results import ImageState
from velesio_core.settings import Settings, SettingsError
from velesio_core.supervision import JobSupervisor, listen_for_cancellations

if TYPE_CHECKING:
    from velesio_core.backends.sd.backend import SdBackend

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def queues_for(models: list[ModelInfo], *, images: bool) -> list[str]:
    """The queues of every model served (an image pipeline serves IMAGE_MODEL): its jobs reach no
    worker that cannot run them."""
    names = [model.id for model in models] + ([IMAGE_MODEL] if images else [])
    return [queue.for_model(name) for name in names for queue in Queue.of_model(name)]


def start_image_backend(settings: Settings, on_change: Callable[[], None] | None = None) -> SdBackend:
    """The image pipeline, with its first checkpoint loaded (SD_MODEL, else the first found)."""
    from velesio_core.backends.sd.backend import SdBackend

    try:
        backend = SdBackend.from_settings(settings, on_change=on_change)
    except RuntimeError as error:  # SD_DEVICE=cuda without a GPU torch can see
        raise SettingsError("SD_DEVICE", str(error), "set SD_DEVICE=auto, or install a CUDA build of torch") from None
    try:
        backend.start(settings.sd_model)
    except GatewayError as error:
        variable = "SD_MODEL" if settings.sd_model else "SD_MODEL_URL"
        raise SettingsError(
            variable, error.message, f"put a checkpoint in {settings.sd_checkpoints_dir} or set SD_MODEL_URL to one"
        ) from None
    return backend


@dataclass
class Backends:
    """What a worker runs jobs on: an LLM service, an image pipeline, or both."""

    service: LlmService | None = None
    images: SdBackend | None = None

    @classmethod
    def start(cls, settings: Settings, on_image_change: Callable[[], None] | None = None) -> Backends:
        backends = cls()
        try:
            if settings.llm_backend is not None:
                backends.service = start_llm_service(settings)
            if settings.run_sd:
                backends.images = start_image_backend(settings, on_change=on_image_change)
        except BaseException:
            backends.close()
            raise
        return backends

    def dispatcher(self, worker_id: str, board: ImageBoardWriter | None) -> JobDispatcher:
        return JobDispatcher(
            self.service.backend if self.service else None,
            worker_id=worker_id,
            images=self.images,
            board=board if self.images else None,
        )

    def models(self) -> list[ModelInfo]:
        """The LLMs served (an image pipeline's checkpoints are on the card's ``images``)."""
        return self.service.models() if self.service else []

    def image_status(self) -> ImageState | None:
        return self.images.status().image_state() if self.images else None

    def restart_hung(self, job: Job) -> None:
        """A job's backend stopped making progress: restart it so the worker serves again.

        An image pipeline cannot be restarted safely inside the process (a hung CUDA call holds
        its thread): its job ends with an error, and the pipeline is left as it is.
        """
        if job.kind.is_image:
            log.error("the image pipeline made no progress under job %s; it cannot be restarted in-process", job.id)
        elif self.service is not None:
            self.service.restart_hung()

    def close(self) -> None:
        if self.service is not None:
            self.service.close()
        if self.images is not None:
            self.images.close()


def start_metrics(
    settings: Settings, worker_id: str, backends: Backends, supervisor: JobSupervisor
) -> Callable[[], None]:
    """Serve the worker's metrics on METRICS_PORT (unless METRICS=false); returns their stop."""
    if not settings.metrics:
        return lambda: None
    states, slots = [], 0
    if (service := backends.service) is not None:
        states.append(BackendState(settings.llm_backend or "none", service.backend.healthy, lambda: service.restarts))
        slots += settings.llama_slots
    if (images := backends.images) is not None:
        states.append(BackendState("sd", images.healthy, lambda: 0))
        slots += 1  # one image job at a time per pipeline
    state = WorkerState(worker_id=worker_id, backends=states, slots=slots, busy_slots=lambda: supervisor.busy_slots)
    return serve_worker_metrics(state, settings.metrics_host, settings.metrics_port)


@dataclass
class WorkerRuntime:
    backends: Backends
    supervisor: JobSupervisor
    sinks: RedisEventSinks
    card: WorkerCard
    redis: redis.Redis
    liveness: Liveness
    #: What the broker holds in Redis that no thread of this process runs (a lost fetch reply).
    orphans: Orphans
    #: The messages this process's threads run or are about to (the broker's own count).
    held: Callable[[], frozenset[str]]
    _stop_metrics: Callable[[], None] = lambda: None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _publish_lock: threading.Lock = field(default_factory=threading.Lock)
    _beat_thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._beat_thread = threading.Thread(target=self._beat, name="liveness", daemon=True)

    @property
    def image_queues(self) -> list[str]:
        return [Queue.SD.for_model(IMAGE_MODEL)] if self.backends.images is not None else []

    @property
    def text_queues(self) -> list[str]:
        return [name for name in self.card.queues if name not in self.image_queues]

    @classmethod
    def start(cls, settings: Settings, worker_id: str, broker: WakingRedisBroker) -> WorkerRuntime:
        holder: list[WorkerRuntime] = []

        def on_image_change() -> None:
            if holder:  # a change while the runtime starts is on the card it publishes
                holder[0].refresh_images()

        backends = Backends.start(settings, on_image_change=on_image_change)
        try:
            client = sync_client(settings)
            sinks = RedisEventSinks(
                client, broker_id=broker.broker_id, namespace=broker.namespace, on_acked=broker.acked_by_job
            )
            supervisor = JobSupervisor(
                backends.dispatcher(worker_id, RedisImageBoardWriter(client)),
                JobMetrics() if settings.metrics else None,
                progress_timeout_s=settings.job_progress_timeout_s,
                on_stalled=backends.restart_hung,
            )
            models = backends.models()
            card = WorkerCard(
                worker_id,
                queues_for(models, images=backends.images is not None),
                models,
                images=backends.image_status(),
                broker_id=broker.broker_id,
            )
            stop_metrics = start_metrics(settings, worker_id, backends, supervisor)
        except BaseException:
            backends.close()
            raise
        liveness = Liveness(client, worker_id, broker.namespace)
        orphans = Orphans(client, [broker.queue_keys(queue) for queue in card.queues], broker.broker_id)
        runtime = cls(
            backends, supervisor, sinks, card, client, liveness, orphans, broker.held_message_ids, stop_metrics
        )
        holder.append(runtime)
        subscribed = threading.Event()
        listener = threading.Thread(
            target=listen_for_cancellations,
            args=(client, supervisor, subscribed, runtime._stopping),
            name="cancel-listener",
            daemon=True,
        )
        listener.start()
        # Take no job before cancellations can reach us.
        if not subscribed.wait(timeout=30):
            runtime.close()
            raise RuntimeError("could not subscribe to the cancel channel in Redis")
        CardPublisher(client).publish(card)
        HEARTBEAT.set(card.heartbeat_at)
        liveness.beat()  # the card first, then the beat: the reaper needs the card's broker
        threading.Thread(target=runtime._heartbeat, name="heartbeat", daemon=True).start()
        runtime._beat_thread.start()
        return runtime

    def refresh_images(self) -> None:
        """The image pipeline changed (another checkpoint or VAE): tell the API at once."""
        with self._publish_lock:
            self.card.images = self.backends.image_status()
            with contextlib.suppress(redis.RedisError):
                CardPublisher(self.redis).publish(self.card)

    def _heartbeat(self) -> None:
        publisher = CardPublisher(self.redis)
        service = self.backends.service
        restarts = service.restarts if service else 0
        while not self._stopping.wait(HEARTBEAT_S):
            try:
                with self._publish_lock:
                    if service is not None and service.restarts != restarts:
                        # A restarted backend may have come back with other settings.
                        self.card.models = service.models()
                        restarts = service.restarts
                    publisher.publish(self.card)
                HEARTBEAT.set(self.card.heartbeat_at)
            except Exception as error:  # keep beating: Redis or the backend may come back
                log.warning("heartbeat failed: %s", error)

    def _beat(self) -> None:
        """Say we are alive, reap the workers that no longer do, and hand back what this worker's
        broker holds but runs not (queue/reaper.py)."""
        swept_at = time.monotonic()
        while not self._stopping.wait(BEAT_S):
            try:
                if not self.liveness.beat():
                    log.warning("this worker was reaped after a silence: its jobs went to others; serving again")
                    with self._publish_lock:
                        CardPublisher(self.redis).publish(self.card)
                self.liveness.reap()
                if time.monotonic() - swept_at >= Orphans.SWEEP_EVERY_S:
                    swept_at = time.monotonic()
                    self.orphans.sweep(self.held())
            except Exception as error:  # keep beating: Redis may come back
                log.warning("liveness beat failed: %s", error)

    def close(self) -> None:
        self._stopping.set()
        self._stop_metrics()
        if self._beat_thread.is_alive():
            self._beat_thread.join(timeout=5)  # its last beat must not follow the self-reaping
        with contextlib.suppress(redis.RedisError):
            self.liveness.forget()  # hands back what is still held, removes the card
            CardPublisher(self.redis).remove(self.card.worker_id)
        self.supervisor.close()
        self.backends.close()
        self.redis.close()
