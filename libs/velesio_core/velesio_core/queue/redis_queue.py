"""The API's side of the Redis queue: enqueue a job as a Dramatiq message, read its events.

Enqueueing is one Lua call (fairq.lua) that checks the queue's and the key's caps, writes the
message in its key's lane of the fair queue and wakes an idle consumer. Events are read with
``XREAD BLOCK``: the API learns of each event the moment a worker writes it, and nothing in the
request path sleeps or polls. The API sends a job's first XREAD with its enqueue, in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import ErrorKind, GatewayError, QueueFullError, unavailable
from ..events import Event, EventType
from ..jobs import Job
from ..metrics.queue import CANCELLED, EXPIRED, REJECTED
from ..redis_clients import async_client, async_client_for_url, follow_master, log_unreachable
from ..settings import Settings
from .event_sink import FINISHED_EVENTS_TTL_S
from .fair import QUEUE_FULL, FairQueue, Lane, lane_of
from .interface import RETRY_AFTER_S, each_event, timed_out
from .keys import CANCEL_CHANNEL, QueueKeys, events_key, lua_script
from .reaper import REAP_EVERY_S, AsyncReaper

log = logging.getLogger(__name__)

#: Slack on top of a job's deadline and timeout for the last event to travel back.
_GRACE_S = 1.0
#: No single XREAD blocks as long as the clients' socket timeout (redis_clients.SOCKET_TIMEOUT_S):
#: a job may wait minutes for its first event, in bounded steps.
XREAD_BLOCK_MAX_MS = 2_000


#: XREAD's answer as the API's client gets it (RESP2, responses not decoded): per stream, its
#: entries as (id, {field: value}), all bytes; None when the block timed out. redis-py's own
#: type is the union of every protocol and decoding it supports.
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


def first_entry_id(job: Job) -> str:
    """The id of a job's first event ("queued"), chosen here so that the job's first XREAD (after
    it) can go to Redis in the same write as the enqueue that writes it. Its time is the job's
    enqueue time, as Redis's own id would say: the queue's metrics read a waiting job's age from
    it (metrics/queue_state.py)."""
    return f"{int(job.enqueued_at * 1000)}-1"


#: lost.lua's answer when the job's stream is gone too (else its message alone is).
_STREAM_LOST = 1


def lost_job() -> GatewayError:
    """What the client of a started job hears when Redis lost the job (lost.lua)."""
    return unavailable(
        "the job was lost with the queue's data (Redis failed over or restarted) after a worker had started it; retry",
        retry_after_s=RETRY_AFTER_S,
    )


def queue_error(error: RedisError) -> GatewayError:
    """What a client is told when Redis fails under a request."""
    if isinstance(error, RedisConnectionError | RedisTimeoutError):
        reason = log_unreachable(error, "serving a request")
        return unavailable(f"the job queue (Redis) is unreachable: {reason}", retry_after_s=RETRY_AFTER_S)
    log.error("Redis refused a queue command: %s", error)
    return GatewayError(ErrorKind.SERVER, "the job queue failed; the server log has the details")


def actor_name(queue: str) -> str:
    """The Dramatiq actor that runs a queue's jobs (registered by the worker)."""
    return f"run_{queue}_job"


def encode_job_message(job: Job) -> bytes:
    """A Dramatiq message carrying the job, encoded as Dramatiq's JSON encoder would."""
    message = {
        "queue_name": job.queue,
        "actor_name": actor_name(job.queue),
        "args": [job.model_dump(mode="json")],
        "kwargs": {},
        "options": {"redis_message_id": job.id},
        "message_id": job.id,
        "message_timestamp": int(job.enqueued_at * 1000),
    }
    return orjson.dumps(message)


class RedisJobQueue:
    def __init__(
        self, redis: aioredis.Redis, *, queue_cap: int, key_queue_cap: int = 0, read_first: bool = False
    ) -> None:
        self.redis = redis
        self._queue_cap = queue_cap
        #: Waiting jobs one key may have in a queue (0: no cap but the queue's).
        self._key_queue_cap = key_queue_cap
        #: Send each job's first read of its events with its enqueue. Its handle then holds a
        #: connection of the pool until its events are read or it is cancelled, as the API's
        #: handles always are; a caller that may leave handles unread keeps it off.
        self._read_first = read_first
        self._fair = FairQueue(redis)
        self.lost_script = redis.register_script(lua_script("lost"))
        self._following: asyncio.Task[None] | None = None
        self._reaping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """On the event loop that serves requests: follow a Sentinel failover (redis_clients), and
        take a share of reaping dead workers, so their clients hear within seconds (reaper.py)."""
        loop = asyncio.get_running_loop()
        self._following = loop.create_task(follow_master(self.redis))
        self._reaping = loop.create_task(self._reap_dead_workers())

    async def _reap_dead_workers(self) -> None:
        reaper = AsyncReaper(self.redis)
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            try:
                await reaper.reap()
            except RedisError as error:  # requests report Redis's absence; the reaper just retries
                log.debug("could not reap dead workers: %s", error)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisJobQueue:
        return cls(
            async_client(settings), queue_cap=settings.queue_cap, key_queue_cap=settings.key_queue_cap, read_first=True
        )

    @classmethod
    def from_url(cls, url: str, *, queue_cap: int, read_first: bool = False) -> RedisJobQueue:
        return cls(async_client_for_url(url), queue_cap=queue_cap, read_first=read_first)

    async def submit(self, job: Job) -> RedisJobHandle:
        queued, position, first_read = await self._enqueue(job, read_first=self._read_first)
        return RedisJobHandle(self, job, after=queued, position=position, first_read=first_read)

    async def _enqueue(self, job: Job, *, read_first: bool = False) -> tuple[bytes, int | None, _FirstRead | None]:
        """Queue the job's message and open its event stream: the stream's first entry's id,
        the job's place in the queue (0: next) when it is streamed, and (``read_first``) its
        first XREAD when it could be sent with the enqueue."""
        keys = QueueKeys(job.queue)
        # The stream outlives anything that could still read it: the wait, the run, the grace.
        ttl_s = int(job.deadline - job.enqueued_at + job.timeout_s) + FINISHED_EVENTS_TTL_S
        lane = lane_of(job.tenant)
        message = encode_job_message(job)
        options: dict[str, Any] = {
            "queue_cap": self._queue_cap, "lane_cap": self._key_queue_cap,
            "stream": events_key(job.id), "stream_ttl_s": ttl_s, "position": job.stream,
        }  # fmt: skip
        first_read = None
        try:
            reply = None
            if read_first:
                reply, first_read = await self._enqueue_reading_first(job, message, keys, lane, options)
            if reply is None:
                reply = await self._fair.enqueue(keys, job.id, message, lane, **options)
        except RedisError as error:
            raise queue_error(error) from None
        if reply[0] != 1:
            if first_read is not None:
                await first_read.drop()
            REJECTED.labels(job.queue, job.model).inc()
            if reply[0] == QUEUE_FULL:
                raise QueueFullError(self._queue_cap, retry_after_s=RETRY_AFTER_S)
            raise QueueFullError(self._key_queue_cap, retry_after_s=RETRY_AFTER_S, per_key=True)
        _, queued, position = reply
        return queued, position if position >= 0 else None, first_read

    async def _enqueue_reading_first(
        self, job: Job, message: bytes, keys: QueueKeys, lane: Lane, options: dict[str, Any]
    ) -> tuple[Any, _FirstRead | None]:
        """Send the enqueue and the job's first XREAD in one write, and read the enqueue's reply:
        one command's send and redis-py's machinery around it less per job, the API's largest
        share at short answers (docs/decisions.md, "Where a job's CPU goes"). ``(None, None)``
        when it could not be done so (the script not loaded on this Redis, a connection that
        failed): the caller then enqueues the usual way, as redis-py's retry would send again."""
        block_ms = min(int((job.deadline + _GRACE_S - time.time()) * 1000), XREAD_BLOCK_MAX_MS)
        if block_ms <= 0:
            return None, None
        first_id = first_entry_id(job)
        script_keys, args = self._fair.enqueue_command(keys, job.id, message, lane, **options, first_entry_id=first_id)
        pool: Any = self.redis.connection_pool  # redis-py leaves get_connection untyped
        try:
            connection = await pool.get_connection()
        except RedisError:
            return None, None
        first_read = _FirstRead(self.redis, connection)
        try:
            await connection.send_packed_command(
                connection.pack_commands([
                    ("EVALSHA", self._fair.sha, len(script_keys), *script_keys, *args),
                    ("XREAD", "BLOCK", block_ms, "STREAMS", events_key(job.id), first_id),
                ])
            )  # fmt: skip
            reply = await connection.read_response()
        except RedisError:
            await first_read.drop()
            return None, None
        except BaseException:
            await first_read.drop()
            raise
        return reply, first_read

    async def depth(self, queue: str) -> int:
        """Jobs waiting in a queue, whichever key queued them."""
        waiting, _heads = await self._fair.stats(QueueKeys(queue))
        return int(waiting)

    async def close(self) -> None:
        for task in (self._following, self._reaping):
            if task is not None:
                task.cancel()
        await self.redis.aclose()

    async def _cancel_job(self, job: Job) -> None:
        keys = QueueKeys(job.queue)
        await self._fair.cancel(keys, job.id, channel=CANCEL_CHANNEL, job_id=job.id)


class _FirstRead:
    """A job's first XREAD, sent with its enqueue: its reply is read by the job's events, or its
    connection dropped (it still owes that reply) when they will not be read."""

    def __init__(self, redis: aioredis.Redis, connection: Any) -> None:
        self._redis = redis
        self._connection: Any = connection

    async def reply(self) -> _XReadReply:
        connection, self._connection = self._connection, None
        try:
            # On an error or a cancel, read_response disconnects it, as redis-py's own commands do.
            raw = await connection.read_response()
        finally:
            await self._redis.connection_pool.release(connection)
        return cast(_XReadReply, self._redis.response_callbacks["XREAD"](raw))

    async def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                # A connection that fails to close is gone all the same.
                with contextlib.suppress(RedisError, OSError):
                    await connection.disconnect()
            finally:
                await self._redis.connection_pool.release(connection)


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation of the reading task that redis-py swallowed.

    redis-py (8.1) can lose a CancelledError that lands while a command's reply is being read:
    the command returns as if nothing happened, and a reader whose client left would go on
    reading until the job's timeout. The task still counts the request (``cancelling()``), so
    it is raised here, after each read.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisJobHandle:
    def __init__(
        self,
        queue: RedisJobQueue,
        job: Job,
        *,
        after: bytes,
        position: int | None = None,
        first_read: _FirstRead | None = None,
    ) -> None:
        self._queue = queue
        self.job = job
        self._after = after
        self._first_read = first_read
        #: How many jobs would be fetched before it when it was queued (streamed jobs only).
        self.queue_position = position

    def events(self) -> AsyncIterator[Event]:
        return each_event(self.batches())

    async def batches(self) -> AsyncGenerator[list[Event], None]:
        job = self.job
        key = events_key(job.id)
        last_id = self._after
        # Until a worker starts the job, wait up to its deadline; then up to its run timeout.
        give_up_at = job.deadline + _GRACE_S
        started = False
        try:
            while True:
                block_ms = int((give_up_at - time.time()) * 1000)
                if block_ms <= 0:
                    await self._withdraw()
                    if not started:
                        EXPIRED.labels(job.queue, job.model).inc()
                    raise self._timed_out(started)
                reply = await self._read(key, last_id, min(block_ms, XREAD_BLOCK_MAX_MS))
                _raise_if_cancelled()
                if not reply:
                    if started or time.time() < job.deadline:
                        last_id = await self._unless_lost(last_id, started=started)
                    continue
                batch: list[Event] = []
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        event = Event(EventType(fields[b"t"].decode()), fields[b"d"])
                        if not started:
                            # Any event means a worker has the job (see supervision.STARTED_NOTICE_S).
                            started = True
                            give_up_at = time.time() + job.timeout_s + _GRACE_S
                        batch.append(event)
                        if event.type.is_final:
                            yield batch
                            return
                if batch:
                    yield batch
        except RedisError as error:
            raise queue_error(error) from None

    async def _read(self, key: str, last_id: bytes | str, block_ms: int) -> _XReadReply:
        first_read, self._first_read = self._first_read, None
        if first_read is not None:
            return await first_read.reply()
        return cast(_XReadReply, await self._queue.redis.xread({key: last_id}, block=block_ms))

    async def _unless_lost(self, last_id: bytes, *, started: bool) -> bytes:
        """After a silent read, make sure the job still exists somewhere in Redis (lost.lua); the
        entry id to read after.

        A failover that promoted a replica before the job's writes reached it, or a restart
        without persistence, can lose the job's message, its stream or both. A job no worker had
        started is queued again, as its client is still waiting; one that had started ends with
        :func:`lost_job`'s error, since its output may have reached the client already (at most once
        after the first output: docs/decisions.md, "Delivery")."""
        job = self.job
        keys = QueueKeys(job.queue)
        lost = await self._queue.lost_script(keys=[keys.messages_hash, events_key(job.id)], args=[job.id, last_id])
        if not lost:
            return last_id
        what = "message and stream" if lost == _STREAM_LOST else "message"
        if started:
            log.warning("job %s's %s was lost with Redis's data while a worker ran it: ended", job.id, what)
            raise lost_job()
        log.warning("job %s's %s was lost with Redis's data before any worker took it: queued again", job.id, what)
        queued, _position, _first_read = await self._queue._enqueue(job)
        return queued

    async def cancel(self) -> None:
        CANCELLED.labels(self.job.queue, self.job.model).inc()
        await self._withdraw()

    async def _withdraw(self) -> None:
        first_read, self._first_read = self._first_read, None
        if first_read is not None:
            await first_read.drop()
        # If Redis is gone too, workers still drop the job once its deadline or timeout passes.
        with contextlib.suppress(RedisError):
            await self._queue._cancel_job(self.job)

    def _timed_out(self, started: bool) -> GatewayError:
        waited = self.job.deadline - self.job.enqueued_at
        return timed_out(self.job, started=started, unstarted=f"no worker started the job within {waited:g} s")
