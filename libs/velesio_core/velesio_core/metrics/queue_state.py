"""The queue's state, read from Redis when Prometheus scrapes the API: each queue's depth and the
age of its oldest job, the live workers per model, and whether Redis answers at all.

Read at scrape time, they are right whichever API process answers and cost nothing between
scrapes. The oldest job's age comes from the id of its event stream's first entry, which Redis
itself stamped when the job was queued: no clock but Redis's is involved, and no message is decoded.
"""

from __future__ import annotations

import itertools
import logging

import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from ..errors import GatewayError
from ..jobs import IMAGE_MODEL, Queue
from ..queue.fair import FairQueue
from ..queue.keys import QueueKeys, events_key
from ..registry import WorkerRegistry

log = logging.getLogger(__name__)


async def queue_families(redis: aioredis.Redis) -> list[Metric]:
    """The scrape-time families, read from Redis in a round trip per queue and one more."""
    redis_up = GaugeMetricFamily("velesio_redis_up", "Whether the API reached Redis at this scrape (1) or not (0).")
    try:
        families = await _read_queues(redis)
    except (RedisError, GatewayError) as error:
        log.warning("metrics: could not read the queues from Redis: %s", error)
        redis_up.add_metric([], 0)
        return [redis_up]
    redis_up.add_metric([], 1)
    return [redis_up, *families]


async def _read_queues(redis: aioredis.Redis) -> list[Metric]:
    workers = GaugeMetricFamily(
        "velesio_workers", "Live workers (fresh heartbeat) serving each model.", labels=["model"]
    )
    depth = GaugeMetricFamily(
        "velesio_queue_waiting_jobs", "Jobs waiting in each queue for a worker.", labels=["queue", "model", "kind"]
    )
    oldest = GaugeMetricFamily(
        "velesio_queue_oldest_job_age_seconds",
        "How long the oldest waiting job of each queue has waited (0 when none waits).",
        labels=["queue", "model", "kind"],
    )
    serving: dict[str, int] = {}
    for card in await WorkerRegistry(redis).workers():
        # An image worker serves the image pipeline's model.
        for model in [model.id for model in card.models] + ([IMAGE_MODEL] if card.images is not None else []):
            serving[model] = serving.get(model, 0) + 1
    queues = [(kind.for_model(model), model, kind.value) for model in serving for kind in Queue.of_model(model)]

    fair = FairQueue(redis)
    stats = [await fair.stats(QueueKeys(queue)) for queue, _model, _kind in queues]
    async with redis.pipeline(transaction=False) as pipe:
        for _waiting, heads in stats:
            # Each lane is oldest first: the oldest waiting job is one of the heads.
            for head in heads:
                pipe.xrange(events_key(head.decode()), count=1)
        pipe.time()
        replies = await pipe.execute()
    seconds, micros = replies[-1]
    now_ms = seconds * 1000 + micros // 1000
    first_entries = iter(replies[:-1])

    for model, count in serving.items():
        workers.add_metric([model], count)
    for (queue, model, kind), (waiting, heads) in zip(queues, stats, strict=True):
        labels = [queue, model, kind]
        depth.add_metric(labels, waiting)
        firsts = itertools.islice(first_entries, len(heads))
        queued_ms = [int(entries[0][0].split(b"-")[0]) for entries in firsts if entries]
        oldest.add_metric(labels, max(0.0, (now_ms - min(queued_ms)) / 1000) if queued_ms else 0.0)
    return [workers, depth, oldest]
