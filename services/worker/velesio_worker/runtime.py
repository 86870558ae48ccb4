"""What a queue worker runs besides Dramatiq: its backend, the executor that runs jobs on it, the
listener that cancels abandoned jobs, and the heartbeat that keeps its card in the registry."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field

import redis

from velesio_core.backends.base import ModelInfo
from velesio_core.backends.service import LlmService, start_llm_service
from velesio_core.execution import JobExecutor, listen_for_cancellations
from velesio_core.jobs import Queue
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.registry import HEARTBEAT_S, CardPublisher, WorkerCard
from velesio_core.runner import JobRunner
from velesio_core.settings import Settings

log = logging.getLogger(__name__)


def queues_for(models: list[ModelInfo]) -> list[str]:
    """The queues of every model served: its jobs reach no worker that cannot run them."""
    return [queue.for_model(model.id) for model in models for queue in Queue]


@dataclass
class WorkerRuntime:
    service: LlmService
    executor: JobExecutor
    sinks: RedisEventSinks
    card: WorkerCard
    redis: redis.Redis
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, settings: Settings, worker_id: str, broker: WakingRedisBroker) -> WorkerRuntime:
        service = start_llm_service(settings)
        try:
            client = redis.Redis.from_url(settings.redis_url)
            sinks = RedisEventSinks(
                client, broker_id=broker.broker_id, namespace=broker.namespace, on_acked=broker.acked_by_job
            )
            executor = JobExecutor(JobRunner(service.backend, worker_id=worker_id))
            models = service.models()
            card = WorkerCard(worker_id, queues_for(models), models)
        except BaseException:
            service.close()
            raise
        runtime = cls(service, executor, sinks, card, client)
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
            except Exception as error:  # keep beating: Redis or llama-server may come back
                log.warning("heartbeat failed: %s", error)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(redis.RedisError):
            CardPublisher(self.redis).remove(self.card.worker_id)
        self.executor.close()
        self.service.close()
        self.redis.close()
