"""The API's queue on a real Redis: a job's first read of its events goes to Redis with its
enqueue, in the same write, and never outlives the job's handle (a refused job, a cancelled one),
and a Redis that lost the queue's script still takes jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.support.processes import wait_until
from velesio_core.errors import QueueFullError
from velesio_core.events import EventType
from velesio_core.jobs import Job, JobKind
from velesio_core.queue.keys import QueueKeys, events_key
from velesio_core.queue.redis_queue import RedisJobQueue

DB = 15


@pytest.fixture
def db(redis_server):
    client = redis_server.client(DB)
    client.flushdb()
    yield redis_server.url(DB), client
    client.flushdb()


def job() -> Job:
    return Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=60, timeout_s=60)


def blocked_readers(client) -> int:
    """Clients of this test's database that Redis holds in a blocking XREAD."""
    return sum(
        1 for each in client.client_list() if each["db"] == str(DB) and each["cmd"] == "xread" and "b" in each["flags"]
    )


def finish(client, queued: Job) -> None:
    """Write the job's result event, as its worker would."""
    data = orjson.dumps({"content": "done"})
    client.xadd(events_key(queued.id), {"t": EventType.RESULT.value, "d": data})


@contextlib.asynccontextmanager
async def api_queue(url: str, queue_cap: int = 10) -> AsyncIterator[RedisJobQueue]:
    """The queue as the API has it (first reads on), its script loaded by a job queued and
    cancelled, as on a running API."""
    queue = RedisJobQueue.from_url(url, queue_cap=queue_cap, read_first=True)
    try:
        await (await queue.submit(job())).cancel()
        yield queue
    finally:
        await queue.close()


def test_a_jobs_first_read_waits_in_redis_from_the_moment_it_is_queued(db):
    url, client = db
    queued = job()

    async def go() -> list[EventType]:
        async with api_queue(url) as queue:
            handle = await queue.submit(queued)
            # Nothing has asked for the job's events yet: the read sent with the enqueue waits.
            waiting = blocked_readers(client)
            finish(client, queued)
            types = [event.type async for event in handle.events()]
            return [waiting, *types]

    assert asyncio.run(go()) == [1, EventType.RESULT]
    assert blocked_readers(client) == 0


def test_a_refused_job_leaves_no_read_waiting(db):
    url, client = db

    async def go() -> None:
        async with api_queue(url, queue_cap=1) as queue:
            await queue.submit(job())
            with pytest.raises(QueueFullError):
                await queue.submit(job())
            # Only the first job's read waits; the refused one's connection was closed.
            wait_until(lambda: blocked_readers(client) == 1, timeout=10, what="the refused job's read ending")
            assert await queue.redis.ping()

    asyncio.run(go())


def test_a_job_cancelled_before_its_events_were_read_leaves_no_read_waiting(db):
    url, client = db

    async def go() -> None:
        async with api_queue(url) as queue:
            handle = await queue.submit(job())
            assert blocked_readers(client) == 1
            await handle.cancel()
            wait_until(lambda: blocked_readers(client) == 0, timeout=10, what="the cancelled job's read ending")
            assert await queue.redis.ping()

    asyncio.run(go())


def test_a_redis_that_lost_the_queues_script_still_takes_jobs(db):
    url, client = db
    queued = job()

    async def go() -> list[EventType]:
        async with api_queue(url) as queue:
            client.script_flush()  # as a restarted Redis has it
            handle = await queue.submit(queued)
            finish(client, queued)
            return [event.type async for event in handle.events()]

    assert asyncio.run(go()) == [EventType.RESULT]
    assert client.hexists(QueueKeys(queued.queue).messages_hash, queued.id)
