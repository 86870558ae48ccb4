"""A Dramatiq Redis broker whose idle consumers wake on a Redis notification instead of sleeping.

Dramatiq's stock Redis consumer polls: when a fetch comes back empty it sleeps with an
exponential backoff of up to ``worker_timeout``, so a message sent to an idle worker waits
hundreds of milliseconds before its actor starts: the whole latency budget of an interactive
gateway. ``make bench`` measures both consumers side by side (bench/RESULTS.md, rows d).

Here every enqueue also pushes a token on a per-queue *wake list*, and a consumer with nothing to
fetch blocks on that list with ``BLPOP`` (up to ``worker_timeout``, after which it simply fetches
again, so a lost token costs at most that). A consumer whose prefetch is full waits for an ack or
nack of its own instead of polling.

Messages wait in the fair queue (fair.py): a fetch takes what went back on Dramatiq's list first,
then each key's jobs in turn. Everything after the fetch stays Dramatiq's: a fetched message is in
the broker's unacked set as Dramatiq's fetch leaves it, acked, nacked and requeued by Dramatiq's
own script, and dead workers' messages recovered by Dramatiq's maintenance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from .fair import FairQueue, lane_of
from .keys import WAKE_TOKENS_MAX, QueueKeys


class WakingRedisBroker(RedisBroker):
    """Dramatiq's RedisBroker with wake-on-enqueue consumers. Same constructor arguments.

    velesio's worker builds it with ``middleware=[]``, on purpose: Dramatiq's default middleware
    would retry a failed job (Retries), and kill or drop jobs by its own clock (TimeLimit,
    AgeLimit). velesio has its own deadlines and timeouts (supervision.py), and must never run a
    job again once its output may have reached a client.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fair = FairQueue(self.client)
        # Messages whose job acknowledged them itself, with its final event (finish.lua).
        self._acked_by_job: set[str] = set()
        # Messages handed to this process's worker threads and not acknowledged yet, whichever
        # consumer fetched them (Dramatiq replaces a consumer after a connection error).
        self._held: set[str] = set()
        #: Set when the worker drains: consumers fetch nothing more, and hand back what they hold.
        self.draining = threading.Event()

    @property
    def consumer_class(self) -> type[_WakingConsumer]:
        return _WakingConsumer

    def queue_keys(self, queue_name: str) -> QueueKeys:
        return QueueKeys(queue_name, self.namespace)

    def do_enqueue(self, queue_name: str, message_id: str, data: bytes) -> None:
        # A message sent through Dramatiq itself (an actor's send) carries no key.
        self._fair.enqueue(self.queue_keys(queue_name), message_id, data, lane_of(None))

    def do_fetch(self, queue_name: str, room: int) -> list[bytes | None]:
        if self._should_do_maintenance("fetch"):
            self._maintain(queue_name)
        keys = self.queue_keys(queue_name)
        fetched: list[bytes | None] = self._fair.fetch(keys, room, broker_id=self.broker_id, now_ms=current_millis())
        return fetched

    def _maintain(self, queue_name: str) -> None:
        """Dramatiq's maintenance, as its fetch runs it now and then (dead brokers' messages back
        on the ready list, old dead letters dropped), fetching nothing."""
        self.scripts["dispatch"](
            keys=[self.namespace],
            args=[
                "fetch",
                current_millis(),
                queue_name,
                self.broker_id,
                self.heartbeat_timeout,
                self.dead_message_ttl,
                1,
                self._max_unpack_size(),
                0,
            ],
        )

    def held_message_ids(self) -> frozenset[str]:
        """The messages this process's threads run or are about to: any other id in its unacked
        sets is an orphan (reaper.Liveness.hand_back_orphans)."""
        return frozenset(self._held)

    def acked_by_job(self, message_id: str) -> None:
        """Record that a job acknowledged its own message, so the consumer's ack skips Redis."""
        self._acked_by_job.add(message_id)

    def take_acked_by_job(self, message_id: str) -> bool:
        try:
            self._acked_by_job.remove(message_id)
        except KeyError:
            return False
        return True

    def wake(self, queue_name: str, count: int) -> None:
        """Wake up to ``count`` idle consumers of a queue (after messages went back on it)."""
        key = self.queue_keys(queue_name).wake_list
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(key, *["1"] * count)
        pipe.ltrim(key, -WAKE_TOKENS_MAX, -1)
        pipe.execute()


class _WakingConsumer(_RedisConsumer):
    def __init__(self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._wake_key = broker.queue_keys(queue_name).wake_list
        self._timeout_s = timeout / 1000
        self._capacity_freed = threading.Event()
        # True once a fetch came back with fewer messages than it asked for: the queue was empty
        # then, and only a wake token (or the idle timeout) can mean there is more.
        self._drained = False
        self._woken = False

    def ack(self, message: MessageProxy) -> None:
        try:
            if self.broker.take_acked_by_job(message.message_id):
                self.queued_message_ids.discard(message.message_id)
            else:
                super().ack(message)
        finally:
            self.broker._held.discard(message.message_id)
            self._capacity_freed.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self.broker._held.discard(message.message_id)
            self._capacity_freed.set()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        requeued = list(messages)
        super().requeue(requeued)
        self.broker._held.difference_update(message.message_id for message in requeued)
        if requeued:
            self.broker.wake(self.queue_name, len(requeued))

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.broker.draining.is_set():
                    self._hand_back_cache()
                    # The consumer thread checks in (its stop) between calls; do not spin.
                    time.sleep(0.1)
                    return None
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        # Dramatiq guards against this too (its issue #266): skip the hole.
                        continue
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    self.broker._held.add(message.message_id)
                    return MessageProxy(message)

                room = self.prefetch - self.outstanding_message_count
                if room <= 0:
                    self._wait_for_capacity()
                    return None

                if not self._drained:
                    self.message_cache = self.broker.do_fetch(self.queue_name, room)
                    self._drained = len(self.message_cache) < room
                    if self.message_cache:
                        continue
                    if self._woken:
                        # Woken for a message another consumer took first: nothing to do but
                        # let the consumer thread check in (shutdown, delayed messages).
                        self._woken = False
                        return None
                self._woken = self._wait_for_wake()
                self._drained = False
                if not self._woken:
                    # The idle timeout: the consumer thread checks in, as after Dramatiq's sleep.
                    return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _hand_back_cache(self) -> None:
        """Messages fetched but not yet handed to a worker thread go back to the queue."""
        cached, self.message_cache = [data for data in self.message_cache if data is not None], []
        if cached:
            self.requeue([MessageProxy(Message.decode(data)) for data in cached])

    def _wait_for_wake(self) -> bool:
        return self.broker.client.blpop([self._wake_key], timeout=self._timeout_s) is not None

    def _wait_for_capacity(self) -> None:
        self._capacity_freed.clear()
        if self.outstanding_message_count >= self.prefetch:
            self._capacity_freed.wait(self._timeout_s)
