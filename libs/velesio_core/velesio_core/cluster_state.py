"""What the cluster is doing now, read from Redis: workers, queues, jobs and recent errors.

The console's live views (GET /admin/events) are built from here. Nothing new is written to
Redis to make them: everything is read from what the queue and the workers keep anyway.

- Workers: the registry's cards (registry.py), stale ones included so that a worker that stopped
  heartbeating shows as down instead of vanishing.
- Waiting jobs: a queue's fair queue, in the order they would be fetched (fair.py), with each
  message's body in the queue's hash.
- Jobs a worker holds: Dramatiq's unacked sets (one per worker broker and queue). A held job is
  *running* once its event stream has more than the ``queued`` entry the API opened it with
  (a worker writes ``started`` at once, see runner.py); until then it is prefetched.
- Recent errors: a job that was seen and is gone ended; its stream's last event says how. Kept
  per process (each API process watches for itself), the newest first.

Reading costs a handful of commands per queue; :meth:`ClusterState.snapshot` shares one reading
between every caller for a second, however many consoles are open.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from .errors import ErrorKind, GatewayError
from .events import EventType
from .queue.fair import FairQueue
from .queue.keys import (
    CANCEL_CHANNEL,
    DRAMATIQ_NAMESPACE,
    WORKERS_KEY,
    QueueKeys,
    events_key,
    operator_cancel_key,
)
from .registry import STALE_AFTER_S, WorkerCard

#: The most waiting jobs listed per queue; the depth is counted in full.
LISTED_PER_QUEUE = 100
#: How long one reading is shared between callers.
SNAPSHOT_TTL_S = 1.0
ERRORS_KEPT = 50
#: A cancelled job's client is told this at once (instead of waiting out the job's deadline).
CANCELLED_BY_OPERATOR = GatewayError(ErrorKind.CONFLICT, "the job was cancelled by an operator")


@dataclass(frozen=True)
class JobView:
    id: str
    kind: str
    model: str
    queue: str
    #: ``waiting`` (in the queue), ``fetched`` (a worker holds it, not started), ``running``.
    state: str
    enqueued_at: float
    #: 1-based place in its queue while waiting.
    position: int | None
    #: The stored API key that queued it; None for API_TOKENS (or before keys existed).
    key_id: str | None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "queue": self.queue,
            "state": self.state,
            "age_s": round(max(0.0, now - self.enqueued_at), 1),
            "position": self.position,
            "key_id": self.key_id,
        }


def _job_of_message(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        message = orjson.loads(raw)
        job = message["args"][0]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return job if isinstance(job, dict) else None


#: How far back from a stream's end its final event is looked for. (A job an operator cancelled
#: is told by its mark instead: its worker may write many tokens after the error before it stops.)
_TAIL = 50
#: How long an operator's cancel mark outlives the cancel: longer than a worker takes to stop.
_CANCEL_MARK_TTL_S = 600


def _final_event(tail: list[tuple[bytes, dict[bytes, bytes]]]) -> dict[bytes, bytes] | None:
    """The event that ended a job, from its stream's tail (newest first): the earliest final one,
    which is the one its client read."""
    final = None
    for _entry_id, fields in tail:
        if EventType(fields.get(b"t", b"queued").decode()).is_final:
            final = fields
    return final


def _view(job_id: str, job: dict[str, Any], queue: str, state: str, position: int | None) -> JobView:
    tenant = job.get("tenant")
    return JobView(
        id=job_id,
        kind=str(job.get("kind", "?")),
        model=str(job.get("model", "?")),
        queue=queue,
        state=state,
        enqueued_at=float(job.get("enqueued_at") or time.time()),
        position=position,
        key_id=tenant.get("key_id") if isinstance(tenant, dict) else None,
    )


def _worker_view(card: WorkerCard, now: float, running: list[JobView]) -> dict[str, Any]:
    models = []
    for model in card.models:
        busy = sum(1 for job in running if job.model == model.id and job.kind in ("completion", "chat"))
        models.append({"id": model.id, "slots": model.slots, "busy": busy, "n_ctx": model.n_ctx})
    images = card.images
    return {
        "id": card.worker_id,
        "host": card.host,
        "pid": card.pid,
        "queues": card.queues,
        "models": models,
        "images": None
        if images is None
        else {
            "checkpoint": images["sd_model_checkpoint"],
            "checkpoints": [entry["title"] for entry in images["checkpoints"]],
            "device": images["device"],
            "busy": sum(1 for job in running if job.queue.startswith("sd-")),
        },
        "alive": now - card.heartbeat_at < STALE_AFTER_S,
        "heartbeat_age_s": round(now - card.heartbeat_at, 1),
        "uptime_s": round(now - card.started_at),
    }


class ClusterState:
    """The read model behind the console's live views, and its one action: cancel a job."""

    def __init__(self, redis: aioredis.Redis, *, namespace: str = DRAMATIQ_NAMESPACE) -> None:
        self._redis = redis
        self._namespace = namespace
        self._fair = FairQueue(redis)
        self._lock = asyncio.Lock()
        self._snapshot: dict[str, Any] | None = None
        self._taken_at = float("-inf")
        #: Jobs in the last reading, to notice the ones that end between two readings.
        self._seen: dict[str, JobView] = {}
        self._errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=ERRORS_KEPT)

    async def snapshot(self) -> dict[str, Any]:
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._taken_at >= SNAPSHOT_TTL_S:
                self._snapshot = await self._read()
                self._taken_at = time.monotonic()
            return self._snapshot

    async def _cards(self) -> list[WorkerCard]:
        raw = await self._redis.hgetall(WORKERS_KEY)
        return sorted((WorkerCard.from_json(data) for data in raw.values()), key=lambda card: card.started_at)

    async def _held_sets(self) -> dict[str, list[str]]:
        """Queue name -> the unacked-set keys of the workers holding its messages."""
        held: dict[str, list[str]] = collections.defaultdict(list)
        async for key in self._redis.scan_iter(match=f"{self._namespace}:__acks__.*", count=500):
            name = key.decode()
            # dramatiq:__acks__.<broker id>.<queue>: neither a broker id nor a queue has a dot.
            held[name.rpartition(".")[2]].append(name)
        return held

    async def _read(self) -> dict[str, Any]:
        now = time.time()
        cards = await self._cards()
        held = await self._held_sets()
        queue_names = sorted({queue for card in cards for queue in card.queues} | set(held))
        waiting: list[JobView] = []
        holding: list[JobView] = []
        queues = []
        for queue in queue_names:
            keys = QueueKeys(queue, self._namespace)
            pipe = self._redis.pipeline(transaction=False)
            for key in held.get(queue, []):
                pipe.smembers(key)
            held_ids = await pipe.execute()
            (depth, _heads), waiting_ids = await self._fair.stats(keys), await self._fair.order(keys, LISTED_PER_QUEUE)
            waiting_ids = [raw.decode() for raw in waiting_ids]
            held_list = sorted({raw.decode() for members in held_ids for raw in members})
            bodies = (
                await self._redis.hmget(keys.messages_hash, waiting_ids + held_list) if waiting_ids or held_list else []
            )
            queue_waiting = []
            for position, (job_id, body) in enumerate(zip(waiting_ids, bodies, strict=False), start=1):
                job = _job_of_message(body)
                if job is not None:
                    queue_waiting.append(_view(job_id, job, queue, "waiting", position))
            for job_id, body in zip(held_list, bodies[len(waiting_ids) :], strict=True):
                job = _job_of_message(body)
                if job is not None:
                    holding.append(_view(job_id, job, queue, "fetched", None))
            waiting += queue_waiting
            oldest = min((job.enqueued_at for job in queue_waiting), default=None)
            per_key = collections.Counter(job.key_id or "" for job in queue_waiting)
            queues.append(
                {
                    "name": queue,
                    "depth": depth,
                    "held": len(held_list),
                    "oldest_wait_s": None if oldest is None else round(now - oldest, 1),
                    "per_key": dict(per_key),
                }
            )
        running = await self._mark_running(holding)
        jobs = running + waiting
        await self._note_ended(jobs, now)
        return {
            "at": now,
            "workers": [_worker_view(card, now, [job for job in running if job.state == "running"]) for card in cards],
            "queues": queues,
            "jobs": [job.as_dict(now) for job in jobs],
            "errors": list(self._errors),
        }

    async def _mark_running(self, holding: list[JobView]) -> list[JobView]:
        if not holding:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for job in holding:
            pipe.xlen(events_key(job.id))
            pipe.xrevrange(events_key(job.id), count=_TAIL)
            pipe.exists(operator_cancel_key(job.id))
        replies = await pipe.execute()
        marked = []
        for job, length, tail, cancelled in zip(holding, replies[::3], replies[1::3], replies[2::3], strict=True):
            if cancelled or _final_event(tail) is not None:
                continue  # ended; its worker stops and acknowledges it in a moment
            marked.append(dataclasses.replace(job, state="running") if length > 1 else job)
        return marked

    async def _note_ended(self, jobs: list[JobView], now: float) -> None:
        current = {job.id: job for job in jobs}
        ended = [job for job_id, job in self._seen.items() if job_id not in current]
        self._seen = current
        if not ended:
            return
        pipe = self._redis.pipeline(transaction=False)
        for job in ended:
            pipe.xrevrange(events_key(job.id), count=_TAIL)
            pipe.exists(operator_cancel_key(job.id))
        replies = await pipe.execute()
        for job, tail, cancelled in zip(ended, replies[::2], replies[1::2], strict=True):
            fields = _final_event(tail)
            if cancelled:
                error = CANCELLED_BY_OPERATOR.to_event_data()
            elif fields is not None and fields.get(b"t") == EventType.ERROR.value.encode():
                try:
                    error = orjson.loads(fields.get(b"d", b"{}"))
                except orjson.JSONDecodeError:
                    error = {}
            else:
                continue
            self._errors.appendleft(
                {
                    "at": now,
                    "job_id": job.id,
                    "kind": job.kind,
                    "model": job.model,
                    "key_id": job.key_id,
                    "code": error.get("code"),
                    "message": str(error.get("message", "error")),
                }
            )

    async def cancel(self, job_id: str) -> bool:
        """Cancel a job by its id, waiting or running, as a client's leaving would (fairq.lua),
        and end its client's request at once with :data:`CANCELLED_BY_OPERATOR`. False when no
        queue holds a job of that id."""
        held = await self._held_sets()
        queue_names = {queue for card in await self._cards() for queue in card.queues} | set(held)
        for queue in sorted(queue_names):
            keys = QueueKeys(queue, self._namespace)
            if not await self._redis.hexists(keys.messages_hash, job_id):
                continue
            await self._redis.set(operator_cancel_key(job_id), b"1", ex=_CANCEL_MARK_TTL_S)
            await self._fair.cancel(keys, job_id, channel=CANCEL_CHANNEL, job_id=job_id)
            stream = events_key(job_id)
            if await self._redis.exists(stream):
                error = orjson.dumps(CANCELLED_BY_OPERATOR.to_event_data())
                await self._redis.xadd(stream, {"t": EventType.ERROR.value, "d": error})
            return True
        return False
