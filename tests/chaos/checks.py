"""What a fault may leave behind: Redis keys with neither a TTL nor a live owner, and gauges that
do not return to rest once the load is over."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import redis
from prometheus_client.parser import text_string_to_metric_families

from velesio_core.queue.fair import FairQueue
from velesio_core.queue.keys import (
    BEATS_KEY,
    DRAMATIQ_NAMESPACE,
    SD_OPTIONS_KEY,
    SD_RUNNING_KEY,
    WORKERS_KEY,
    QueueKeys,
)
from velesio_core.queue.reaper import DEAD_AFTER_S
from velesio_core.registry import STALE_AFTER_S

from .cluster import Cluster

#: Gauges and their resting value once no request is in flight.
RESTING_GAUGES = {"velesio_api_streams_in_flight": 0.0, "velesio_worker_busy_slots": 0.0}
#: How long gauges and keys get to settle after the load stops (the API's cancellations, the
#: workers' last acks and events travel for a moment).
SETTLE_S = 10.0


@dataclass
class Leaks:
    keys: list[str]
    gauges: dict[str, float]

    @property
    def total(self) -> int:
        return len(self.keys) + sum(1 for value in self.gauges.values() if value)


def leaked_keys(client: redis.Redis) -> list[str]:
    """Keys that nothing will ever remove: no TTL, and no live owner.

    Kept on purpose, so not leaks: Dramatiq's queue lists and message hashes (emptied as
    messages are taken), its heartbeats, velesio's registry hash, the image options and the
    running image set, the workers' beats. Leaks inside them count too: a beat the reaper left
    behind, a registry card whose worker stopped beating,
    an unacked set of a Dramatiq broker that stopped beating, a message in a hash that is neither
    queued nor held by a live broker.
    """
    heartbeats_key = f"{DRAMATIQ_NAMESPACE}:__heartbeats__"
    live_brokers = {
        member.decode() for member in client.zrangebyscore(heartbeats_key, time.time() * 1000 - 60_000, "+inf")
    }
    leaks: list[str] = []
    held: set[bytes] = set()
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        if key.startswith(f"{DRAMATIQ_NAMESPACE}:__acks__."):
            broker = key.split(".")[1]
            if broker not in live_brokers:
                leaks.append(f"{key} (its broker stopped beating)")
            held.update(client.smembers(key))
            continue
        if client.ttl(key) != -1:
            continue
        if key in (WORKERS_KEY, SD_OPTIONS_KEY, SD_RUNNING_KEY, BEATS_KEY, heartbeats_key):
            continue
        if key.startswith(f"{DRAMATIQ_NAMESPACE}:") and not key.startswith(f"{DRAMATIQ_NAMESPACE}:__"):
            continue  # a queue's list, message hash, delay queue or wake list
        leaks.append(key)
    now_s, now_us = client.time()
    silent_since_ms = now_s * 1000 + now_us // 1000 - 2 * DEAD_AFTER_S * 1000
    for worker_id in client.zrangebyscore(BEATS_KEY, "-inf", silent_since_ms):
        leaks.append(f"{BEATS_KEY}[{worker_id.decode()}] (a dead worker nobody reaped)")
    for worker_id, card in client.hgetall(WORKERS_KEY).items():
        if time.time() - orjson.loads(card)["heartbeat_at"] > STALE_AFTER_S:
            leaks.append(f"{WORKERS_KEY}[{worker_id.decode()}] (a card nobody refreshes)")
    for raw in client.scan_iter(match=f"{DRAMATIQ_NAMESPACE}:*.msgs", count=1000):
        if raw.endswith(b".XQ.msgs"):
            continue  # dead-lettered messages: Dramatiq expires them itself
        # Waiting means reachable by a fetch: on the ready list, or in a lane the schedule serves.
        queued = set(FairQueue(client).order(QueueKeys(raw.decode().removesuffix(".msgs").partition(":")[2])))
        for message_id in client.hkeys(raw):
            if message_id not in queued and message_id not in held:
                leaks.append(f"{raw.decode()}[{message_id.decode()}] (neither queued nor held)")
    return leaks


def gauges(cluster: Cluster) -> dict[str, float]:
    """The current sum of each resting gauge over every API and worker process."""
    totals = dict.fromkeys(RESTING_GAUGES, 0.0)
    for text in cluster.metrics():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
    return totals


def settle_and_find_leaks(cluster: Cluster, timeout: float = SETTLE_S) -> Leaks:
    """Wait up to ``timeout`` for gauges and keys to come to rest; what is left then leaked."""
    deadline = time.monotonic() + timeout
    while True:
        now = gauges(cluster)
        off = {name: value - RESTING_GAUGES[name] for name, value in now.items() if value != RESTING_GAUGES[name]}
        keys = leaked_keys(cluster.redis.master_client())
        if (not off and not keys) or time.monotonic() > deadline:
            return Leaks(keys, off)
        time.sleep(0.25)
