"""The image board: what the image pipelines are doing, for AUTOMATIC1111's global endpoints.

A1111 is one process with one job: ``/progress`` reports *the* current job, ``/interrupt`` and
``/skip`` act on it, and ``/options`` holds *the* checkpoint. velesio has many API processes and
many workers, so this small piece of state is shared on a board that workers write
(:class:`ImageBoardWriter`) and the API reads and acts on (:class:`ImageBoard`):

- the image jobs running now (a Redis sorted set, written by the worker that runs each one);
- each job's progress is the latest ``progress`` event of its own event stream, read back from
  Redis, so a step costs no write beyond the event itself;
- the options chosen through POST /options (a Redis hash), which every image job carries to its
  worker in its payload (``sd_model_checkpoint``, ``sd_vae``), so each worker loads what the
  client chose before running the job;
- the waiting jobs are the image queue itself (``sd`` for :data:`~velesio_core.jobs.IMAGE_MODEL`),
  so a client sees its place in it: how many jobs the fair queue would hand out before its own.

"The current job" is the one that started first among those running: with one image worker, the
only one. A standalone worker (no Redis) keeps the same board in its own memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from .events import Event, EventType
from .jobs import IMAGE_MODEL, Job, Queue
from .queue.fair import FairQueue
from .queue.keys import CANCEL_CHANNEL, SD_OPTIONS_KEY, SD_RUNNING_KEY, JobControl, QueueKeys, events_key, task_key
from .queue.redis_queue import queue_error
from .tenants.redis_keys import string

#: How many of a stream's last entries are searched for its latest progress event.
_RECENT_EVENTS = 8


@dataclass(frozen=True)
class ImageProgress:
    """The current image job and how far it got (A1111's /progress, before encoding)."""

    job_id: str | None
    step: int = 0
    steps: int = 0
    job_no: int = 0
    job_count: int = 0
    started_at: float | None = None
    #: Image jobs waiting in the queue behind it.
    waiting: int = 0
    running: int = 0

    @classmethod
    def of(cls, job_id: str | None, progress: dict[str, Any] | None, *, waiting: int, running: int) -> ImageProgress:
        progress = progress or {}
        return cls(
            job_id,
            step=int(progress.get("step", 0)),
            steps=int(progress.get("steps", 0)),
            job_no=int(progress.get("job_no", 0)),
            job_count=int(progress.get("job_count", 1 if job_id else 0)),
            started_at=progress.get("started_at"),
            waiting=waiting,
            running=running,
        )

    @property
    def fraction(self) -> float:
        """Done so far, 0..1, over every batch of the job."""
        if not self.job_id or self.steps <= 0 or self.job_count <= 0:
            return 0.0
        return min(1.0, (self.job_no * self.steps + self.step) / (self.job_count * self.steps))


class ImageBoardWriter(Protocol):
    """The worker's side, called on the thread that runs the image job."""

    def begin(self, job: Job) -> None: ...

    def progress(self, job: Job, event: Event) -> None: ...

    def end(self, job: Job) -> None: ...


class ImageBoard(Protocol):
    """The API's side."""

    async def current(self) -> ImageProgress: ...

    async def position(self, job_id: str) -> int | None:
        """How many image jobs wait before ``job_id`` (0: next), or None when it is not waiting."""
        ...

    async def name_task(self, name: str, job_id: str, ttl_s: int) -> None:
        """Remember that a client's task name (its token's and its ``force_task_id``'s digest)
        stands for ``job_id``, for ``ttl_s`` seconds."""
        ...

    async def task_job(self, name: str) -> str | None:
        """The job a client's task name stands for, if any."""
        ...

    async def control(self, action: JobControl) -> str | None:
        """Interrupt or skip the current image job; its id, or None when none runs."""
        ...

    async def options(self) -> dict[str, str]: ...

    async def set_options(self, values: dict[str, str]) -> None: ...


class RedisImageBoardWriter:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def begin(self, job: Job) -> None:
        self._redis.zadd(SD_RUNNING_KEY, {job.id: time.time() + job.timeout_s})

    def progress(self, job: Job, event: Event) -> None:
        """The event itself is in the job's stream already."""

    def end(self, job: Job) -> None:
        self._redis.zrem(SD_RUNNING_KEY, job.id)


class RedisImageBoard:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._queue = QueueKeys(Queue.SD.for_model(IMAGE_MODEL))
        self._fair = FairQueue(client)

    async def _running(self) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(SD_RUNNING_KEY, "-inf", time.time())  # jobs of workers that died
        pipe.zrange(SD_RUNNING_KEY, 0, -1)
        _, members = await pipe.execute()
        return [member.decode() for member in members]

    async def current(self) -> ImageProgress:
        try:
            running = await self._running()
            waiting, _heads = await self._fair.stats(self._queue)
            started: list[tuple[float, str, dict[str, Any] | None]] = []
            for job_id in running:
                latest = await self._latest_progress(job_id)
                started.append(((latest or {}).get("started_at") or float("inf"), job_id, latest))
        except RedisError as error:
            raise queue_error(error) from None
        if not started:
            return ImageProgress(None, waiting=waiting)
        _, job_id, latest = min(started, key=lambda item: item[0])
        return ImageProgress.of(job_id, latest, waiting=waiting, running=len(running))

    async def _latest_progress(self, job_id: str) -> dict[str, Any] | None:
        entries = await self._redis.xrevrange(events_key(job_id), count=_RECENT_EVENTS)
        for _entry_id, fields in entries or ():
            if fields and fields.get(b"t") == EventType.PROGRESS.value.encode():
                progress: dict[str, Any] = orjson.loads(fields[b"d"])
                return progress
        return None

    async def position(self, job_id: str) -> int | None:
        try:
            position = await self._fair.position(self._queue, job_id)
        except RedisError as error:
            raise queue_error(error) from None
        return position if position >= 0 else None

    async def name_task(self, name: str, job_id: str, ttl_s: int) -> None:
        try:
            await self._redis.set(task_key(name), job_id, ex=ttl_s)
        except RedisError as error:
            raise queue_error(error) from None

    async def task_job(self, name: str) -> str | None:
        try:
            job_id = await self._redis.get(task_key(name))
        except RedisError as error:
            raise queue_error(error) from None
        return string(job_id) if job_id is not None else None

    async def control(self, action: JobControl) -> str | None:
        current = await self.current()
        if current.job_id is None:
            return None
        try:
            await self._redis.publish(CANCEL_CHANNEL, f"{current.job_id} {action.value}")
        except RedisError as error:
            raise queue_error(error) from None
        return current.job_id

    async def options(self) -> dict[str, str]:
        try:
            raw = await self._redis.hgetall(SD_OPTIONS_KEY)
        except RedisError as error:
            raise queue_error(error) from None
        return {string(key): string(value) for key, value in raw.items()}

    async def set_options(self, values: dict[str, str]) -> None:
        if values:
            try:
                # redis-py takes a mapping of any field and value types, whose keys are invariant.
                fields: dict[FieldT, EncodableT] = dict(values.items())
                await self._redis.hset(SD_OPTIONS_KEY, mapping=fields)
            except RedisError as error:
                raise queue_error(error) from None


class LocalImageBoard:
    """Writer and board at once, in one process (a standalone worker): jobs run on its own threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._options: dict[str, str] = {}
        self._waiting: list[str] = []
        #: Task name -> (job id, when the name expires), see ImageBoard.name_task.
        self._tasks: dict[str, tuple[str, float]] = {}
        #: Where interrupts and skips go: the supervisor's ``control`` (set once it exists).
        self.control_job: Callable[[str], None] | None = None

    def queued(self, job: Job) -> None:
        with self._lock:
            self._waiting.append(job.id)

    def begin(self, job: Job) -> None:
        with self._lock:
            if job.id in self._waiting:
                self._waiting.remove(job.id)
            self._running[job.id] = (time.time(), None)

    def progress(self, job: Job, event: Event) -> None:
        with self._lock:
            if job.id in self._running:
                self._running[job.id] = (self._running[job.id][0], event.value())

    def end(self, job: Job) -> None:
        with self._lock:
            self._running.pop(job.id, None)
            if job.id in self._waiting:
                self._waiting.remove(job.id)

    async def current(self) -> ImageProgress:
        with self._lock:
            waiting, running = len(self._waiting), dict(self._running)
        if not running:
            return ImageProgress(None, waiting=waiting)
        job_id, (_, latest) = min(running.items(), key=lambda item: item[1][0])
        return ImageProgress.of(job_id, latest, waiting=waiting, running=len(running))

    async def position(self, job_id: str) -> int | None:
        with self._lock:
            return self._waiting.index(job_id) if job_id in self._waiting else None

    async def name_task(self, name: str, job_id: str, ttl_s: int) -> None:
        now = time.time()
        with self._lock:
            self._tasks = {key: value for key, value in self._tasks.items() if value[1] > now}
            self._tasks[name] = (job_id, now + ttl_s)

    async def task_job(self, name: str) -> str | None:
        with self._lock:
            job_id, expires_at = self._tasks.get(name, (None, 0.0))
        return job_id if expires_at > time.time() else None

    async def control(self, action: JobControl) -> str | None:
        current = await self.current()
        if current.job_id is not None and self.control_job is not None:
            self.control_job(f"{current.job_id} {action.value}")
        return current.job_id

    async def options(self) -> dict[str, str]:
        with self._lock:
            return dict(self._options)

    async def set_options(self, values: dict[str, str]) -> None:
        with self._lock:
            self._options.update(values)
