"""Find dead workers in seconds and hand back, or end, the jobs they held.

Every worker beats (beat.lua) every :data:`BEAT_S` from a thread of its own; a worker silent for
:data:`DEAD_AFTER_S` is dead. Every worker and every API process runs the reaper every
:data:`REAP_EVERY_S` (reap.lua, atomic: exactly one of them reaps each dead worker). A job the
dead worker held goes back to its queue if its client has been sent nothing yet, and ends with a
503 error event if output was sent, so its client is answered within
``DEAD_AFTER_S + REAP_EVERY_S`` (3 s) of the death instead of the job's whole timeout.

A worker that was only cut off and comes back has lost those jobs: its writes to their streams
are refused (emit.lua, finish.lua), so a job run again elsewhere never shows its client the
output of two runs.
"""

from __future__ import annotations

import logging

import orjson
import redis
import redis.asyncio as aioredis

from ..errors import ErrorKind, GatewayError
from .event_sink import FINISHED_STREAM_TTL_S
from .keys import BEATS_KEY, DRAMATIQ_NAMESPACE, WAKE_TOKENS_MAX, WORKERS_KEY, QueueKeys, lua_script

log = logging.getLogger(__name__)

#: How often a worker beats. Its own thread: jobs, Redis writes of events and the card's
#: heartbeat (registry.HEARTBEAT_S) never delay it.
BEAT_S = 0.5
#: Silence after which a worker is dead: five beats missed, so a loaded machine's scheduling
#: hiccups do not kill a live worker, while the client of a dead worker's job still hears
#: within 3 s.
DEAD_AFTER_S = 2.5
REAP_EVERY_S = 0.5

LOST_WORKER = GatewayError(
    ErrorKind.UNAVAILABLE,
    "the worker running this job stopped answering after it had sent part of the answer; retry",
    retry_after_s=1,
)


def _args(namespace: str) -> list[str | int | bytes]:
    return [
        int(DEAD_AFTER_S * 1000),
        namespace,
        orjson.dumps(LOST_WORKER.to_event_data()),
        FINISHED_STREAM_TTL_S,
        WAKE_TOKENS_MAX,
    ]


def _log(report: list[bytes | int]) -> None:
    for index in range(0, len(report), 3):
        worker, requeued, ended = report[index : index + 3]
        name = worker.decode() if isinstance(worker, bytes) else worker
        log.warning(
            "worker %s was silent for %g s: reaped; %d of its jobs went back to the queue, %d ended with an error",
            name,
            DEAD_AFTER_S,
            requeued,
            ended,
        )


def _log_stop(report: list[bytes | int]) -> None:
    if len(report) == 3 and (report[1] or report[2]):
        log.info("stopping: %d held jobs went back to the queue, %d ended with an error", report[1], report[2])


class Liveness:
    """A worker's side: its beat, and its share of reaping (both from the worker's beat thread)."""

    def __init__(self, client: redis.Redis, worker_id: str, namespace: str = DRAMATIQ_NAMESPACE) -> None:
        self._client = client
        self._worker_id = worker_id
        self._beat = client.register_script(lua_script("beat"))
        self._reap = client.register_script(lua_script("reap"))
        self._args = _args(namespace)

    def beat(self) -> bool:
        """Returns False when this worker had been reaped (it was silent too long, e.g. cut off
        from Redis): its card is gone and the jobs it held are no longer its own."""
        return not self._beat(keys=[BEATS_KEY], args=[self._worker_id])

    def reap(self) -> None:
        _log(self._reap(keys=[BEATS_KEY, WORKERS_KEY], args=self._args))

    def forget(self) -> None:
        """A stopping worker reaps itself: whatever it still holds (a message a worker thread took
        as the drain began, a job cut short) goes back to its queue or ends with the error event,
        and its card and Dramatiq heartbeat go. Call it once its beat has stopped: its last beat
        is recent, so no other reaper takes it for a dead worker meanwhile."""
        _log_stop(self._reap(keys=[BEATS_KEY, WORKERS_KEY], args=[*self._args, self._worker_id]))


class Orphans:
    """A live worker's messages that Redis holds as its own but none of its threads runs.

    A fetch Redis ran whose reply the worker never read (its link dropped in between) leaves
    messages in the worker's unacked sets that no consumer knows of; the reaper does not see them,
    since the worker beats again, so their clients would wait for JOB_DEADLINE. The worker's beat
    thread sweeps every :data:`SWEEP_EVERY_S`: an unacked id its broker does not hold in two
    sweeps running (a fetched message reaches a thread within milliseconds) goes back by the
    reaper's rule (hand_back.lua).
    """

    #: How often the sweep runs, from the beat thread: two sweeps are an orphan's longest life.
    SWEEP_EVERY_S = 1.0

    def __init__(self, client: redis.Redis, keys: list[QueueKeys], broker_id: str) -> None:
        self._client = client
        self._unacked = {keys_.unacked_set(broker_id): keys_ for keys_ in keys}
        self._script = client.register_script(lua_script("orphans"))
        self._suspects: set[tuple[str, str]] = set()

    def sweep(self, held: frozenset[str]) -> int:
        """Hand back what was unheld at the last sweep and still is; returns how many went."""
        pipe = self._client.pipeline(transaction=False)
        for unacked in self._unacked:
            pipe.smembers(unacked)
        members: list[set[bytes]] = pipe.execute()
        unheld = {
            (unacked, id.decode())
            for unacked, ids in zip(self._unacked, members, strict=True)
            for id in ids
            if id.decode() not in held
        }
        orphans, self._suspects = unheld & self._suspects, unheld - self._suspects
        for unacked in {unacked for unacked, _ in orphans}:
            keys = self._unacked[unacked]
            ids = [id for key, id in orphans if key == unacked]
            requeued, ended = self._script(
                keys=[unacked],
                args=[keys.namespace, keys.queue, orjson.dumps(LOST_WORKER.to_event_data()), FINISHED_STREAM_TTL_S,
                      WAKE_TOKENS_MAX, *ids],
            )  # fmt: skip
            log.warning(
                "%d messages this worker fetched never reached it (a reply lost with its link): "
                "%d went back to the queue, %d ended with an error",
                len(ids),
                requeued,
                ended,
            )
        return len(orphans)


class AsyncReaper:
    """An API process's share of reaping."""

    def __init__(self, client: aioredis.Redis, namespace: str = DRAMATIQ_NAMESPACE) -> None:
        self._reap = client.register_script(lua_script("reap"))
        self._args = _args(namespace)

    async def reap(self) -> None:
        _log(await self._reap(keys=[BEATS_KEY, WORKERS_KEY], args=self._args))
