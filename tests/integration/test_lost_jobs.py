"""A job whose data Redis lost (a Sentinel failover that promoted a replica before the job's writes
reached it, a restart without persistence), on a real Redis: its client's handle notices within
one silent read and queues the job again if no worker had started it, or ends it with a clean
error if one had, instead of waiting out the job's deadline or timeout. The losses are made by
hand here (the chaos suite's failover scenario makes them for real, now and then); the worker
side is the real broker and event sinks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event, EventType
from velesio_core.jobs import Job, JobKind, Queue
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.queue.fair import FairQueue
from velesio_core.queue.keys import QueueKeys, events_key
from velesio_core.queue.redis_queue import XREAD_BLOCK_MAX_MS, RedisJobQueue

LLM = Queue.LLM.for_model("m")
KEYS = QueueKeys(LLM)
#: Long enough for several silent reads, short enough that waiting it out fails the test quickly.
DEADLINE_S = 4 * XREAD_BLOCK_MAX_MS / 1000


@pytest.fixture
def db(redis_server):
    client = redis_server.client(15)
    client.flushdb()
    yield redis_server.url(15), client
    client.flushdb()


def a_job() -> Job:
    return Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=DEADLINE_S, timeout_s=DEADLINE_S)


def read_all(url: str, job: Job, after_submit) -> tuple[list[Event], GatewayError | None]:
    """Submit ``job`` through the API's queue, call ``after_submit()`` in a thread, and read the
    job's events to the end as the API does."""

    async def go() -> tuple[list[Event], GatewayError | None]:
        queue = RedisJobQueue.from_url(url, queue_cap=100)
        events: list[Event] = []
        try:
            handle = await queue.submit(job)
            acting = asyncio.get_running_loop().run_in_executor(None, after_submit)
            try:
                async for event in handle.events():
                    events.append(event)
            except GatewayError as error:
                return events, error
            finally:
                await acting
            return events, None
        finally:
            await queue.close()

    return asyncio.run(go())


def a_worker(url: str) -> tuple[WakingRedisBroker, RedisEventSinks]:
    broker = WakingRedisBroker(url=url, middleware=[])
    broker.declare_queue(LLM)
    return broker, RedisEventSinks(broker.client, broker_id=broker.broker_id)


def fetch_when_queued(broker: WakingRedisBroker, job: Job) -> None:
    """Fetch the job, as a worker's consumer does, once it is on the queue."""
    stop_at = time.monotonic() + DEADLINE_S
    while time.monotonic() < stop_at:
        if broker.do_fetch(LLM, 1):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job.id} never came back on the queue")


def test_a_job_whose_message_was_lost_before_any_worker_took_it_is_queued_again(db):
    url, client = db
    job = a_job()
    broker, sinks = a_worker(url)

    def lose_it_then_run_it() -> None:
        # The message goes (lane and hash), its stream stays: what a failover leaves when the
        # old master took the job's last write to its message but not the stream's.
        assert FairQueue(client).cancel(KEYS, job.id, channel="nobody", job_id=job.id) == 1
        assert client.exists(events_key(job.id)) and not client.hexists(KEYS.messages_hash, job.id)
        fetch_when_queued(broker, job)
        sinks.for_job(job).emit(Event(EventType.RESULT, b'{"content":"ran once"}'))

    events, error = read_all(url, job, lose_it_then_run_it)
    assert error is None
    assert [(event.type, event.data) for event in events] == [(EventType.RESULT, b'{"content":"ran once"}')]


def test_a_job_whose_stream_and_message_were_lost_is_queued_again(db):
    url, client = db
    job = a_job()
    broker, sinks = a_worker(url)

    def lose_everything_then_run_it() -> None:
        client.flushdb()  # a restart without persistence
        fetch_when_queued(broker, job)
        sinks.for_job(job).emit(Event(EventType.RESULT, b'{"content":"ran once"}'))

    events, error = read_all(url, job, lose_everything_then_run_it)
    assert error is None
    assert [event.type for event in events] == [EventType.RESULT]


def test_a_started_job_whose_message_was_lost_ends_with_a_clean_error_before_its_timeout(db):
    url, client = db
    job = a_job()
    broker, sinks = a_worker(url)
    lost = threading.Event()

    def start_it_then_lose_it() -> None:
        fetch_when_queued(broker, job)
        with sinks.for_job(job) as sink:
            sink.emit(Event(EventType.TOKEN, b'{"content":"sent"}'))
        # Acknowledged, with no final event: what the new master holds when the old one took
        # the job's final event and the acknowledgement reached it some other way, or a worker
        # whose final write failed in the switch.
        client.srem(KEYS.unacked_set(broker.broker_id), job.id)
        client.hdel(KEYS.messages_hash, job.id)
        lost.set()

    events, error = read_all(url, job, start_it_then_lose_it)
    assert lost.is_set()
    assert [event.type for event in events] == [EventType.TOKEN]
    assert error is not None and error.kind is ErrorKind.UNAVAILABLE, error
    # Not the run timeout's 504 once DEADLINE_S has passed: the loss itself, seen at a silent read.
    assert "lost" in error.message and error.retry_after_s
    assert not client.llen(KEYS.ready_list) and not client.hexists(KEYS.messages_hash, job.id)


def test_a_job_a_worker_runs_silently_is_not_queued_again(db):
    """The check must not take a quiet job for a lost one: a worker that took the message and
    writes nothing for several reads (jobs say ``started`` only when slow) still holds it."""
    url, client = db
    job = a_job()
    broker, sinks = a_worker(url)

    def run_it_silently() -> None:
        fetch_when_queued(broker, job)
        time.sleep(2.5 * XREAD_BLOCK_MAX_MS / 1000)
        assert not client.llen(KEYS.ready_list), "the job was queued again while a worker ran it"
        sinks.for_job(job).emit(Event(EventType.RESULT, b'{"content":"once"}'))

    events, error = read_all(url, job, run_it_silently)
    assert error is None
    assert [event.type for event in events] == [EventType.RESULT]
    # One "queued" entry and the result: the job was queued once.
    assert client.xlen(events_key(job.id)) == 2
