"""The Dramatiq actors: one per queue, each running its job on the Dramatiq worker thread that
took it, so the worker's thread count bounds how many jobs run at once."""

from __future__ import annotations

from typing import Any

import dramatiq

from velesio_core.jobs import Job
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.queue.redis_queue import actor_name
from velesio_core.supervision import JobSupervisor


def register_actors(
    broker: dramatiq.Broker, queues: list[str], supervisor: JobSupervisor, sinks: RedisEventSinks
) -> None:
    def run_job(payload: dict[str, Any]) -> None:
        job = Job.model_validate(payload)
        with sinks.for_job(job) as sink:
            supervisor.execute(job, sink)

    for queue in queues:
        dramatiq.actor(actor_name=actor_name(queue), queue_name=queue, broker=broker)(run_job)
