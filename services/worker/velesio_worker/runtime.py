"""What a queue worker runs besides Dramatiq: its backend, the executor that runs jobs on it, the
listener that cancels abandoned jobs, and the heartbeat that keeps its card in the registry."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from velesio_core.backends.base import ModelInfo
from velesio_core.backends.service import LlmService, start_llm_service
from velesio_core.execution import JobExecutor, listen_for_cancellations
from velesio_core.jobs import Queue
from velesio_core.metrics.worker import HEARTBEAT, JobMetrics, WorkerState, serve_worker_metrics
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.registry import HEARTBEAT_S, CardPublisher, WorkerCard
from velesio_core.runner import JobRunner
from velesio_core.settings import Settings

log = logging.getLogger(__name__)


def queues_for(models: list[ModelInfo]) -> list[str]:
    """The queues of every model served: its jobs reach no worker that cannot run them."""
    return [queue.for_model(model.id) for model in models for queue in Queue]


def start_metrics(settings: Settings, worker_id: str, service: LlmService, executor: JobExecutor) -> Callable[[], None]:
    """Serve the worker's metrics on METRICS_PORT (unless METRICS=false); returns their stop."""
    if not settings.metrics:
        return lambda: None
    state = WorkerState(
        worker_id=worker_id,
        backend=settings.llm_backend or "none",
        slots=settings.llama_slots,
        busy_slots=lambda: executor.busy_slots,
        backend_healthy=service.backend.healthy,
        backend_restarts=lambda: service.restarts,
    )
    return serve_worker_metrics(state, settings.metrics_host, settings.metrics_port)


@dataclass
class WorkerRuntime:
    service: LlmService
    executor: JobExecutor
    sinks: RedisEventSinks
    card: WorkerCard
    redis: redis.Redis
    _stop_metrics: Callable[[], None] = lambda: None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, settings: Settings, worker_id: str, broker: WakingRedisBroker) -> WorkerRuntime:
        service = start_llm_service(settings)
        try:
            client = redis.Redis.from_url(settings.redis_url)
            sinks = RedisEventSinks(
                client, broker_id=broker.broker_id, namespace=broker.namespace, on_acked=broker.acked_by_job
            )
            executor = JobExecutor(
                JobRunner(service.backend, worker_id=worker_id), JobMetrics() if settings.metrics else None
            )
            models = service.models()
            card = WorkerCard(worker_id, queues_for(models), models)
            stop_metrics = start_metrics(settings, worker_id, service, executor)
        except BaseException:
            service.close()
            raise
        runtime = cls(service, executor, sinks, card, client, stop_metrics)
        subscribed = threading.Event()
        listener = threading.Thread(
            target=listen_for_cancellations, args=(client, executor, subscribed), name="cancel-listener", daemon=True
        )
        listener.start()
        # Take no job before cancellations can reach us.
        if not subscribed.wait(timeout=30):
            runtime.close()
            raise RuntimeError("could not subscribe to the cancel channel in Redis")
        CardPublisher(client).publish(card)
        HEARTBEAT.set(card.heartbeat_at)
        threading.Thread(target=runtime._heartbeat, name="heartbeat", daemon=True).start()
        return runtime

    def _heartbeat(self) -> None:
        publisher = CardPublisher(self.redis)
        restarts = self.service.restarts
        while not self._stopping.wait(HEARTBEAT_S):
            try:
                if self.service.restarts != restarts:
                    # A restarted backend may have come back with other settings.
                    self.card.models = self.service.models()
                    restarts = self.service.restarts
                publisher.publish(self.card)
                HEARTBEAT.set(self.card.heartbeat_at)
            except Exception as error:  # keep beating: Redis or llama-server may come back
                log.warning("heartbeat failed: %s", error)

    def close(self) -> None:
        self._stopping.set()
        self._stop_metrics()
        with contextlib.suppress(redis.RedisError):
            CardPublisher(self.redis).remove(self.card.worker_id)
        self.executor.close()
        self.service.close()
        self.redis.close()
