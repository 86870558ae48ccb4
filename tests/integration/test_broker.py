"""The waking broker with real Dramatiq workers on a real Redis: delivery, acks, requeue, wake-ups."""

from __future__ import annotations

import asyncio
import threading
import time

import dramatiq
import pytest

from velesio_core.events import Event, EventType
from velesio_core.jobs import Job, JobKind, Queue
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.queue.fair import FairQueue
from velesio_core.queue.keys import CANCEL_CHANNEL, QueueKeys, events_key
from velesio_core.queue.redis_queue import RedisJobQueue, actor_name

LLM = Queue.LLM.for_model("m")
AUX = Queue.LLM_AUX.for_model("m")


@pytest.fixture
def db(redis_server):
    client = redis_server.client(5)
    client.flushdb()
    yield redis_server.url(5), client
    client.flushdb()


def worker_with(broker, fn, *, queue: str, threads: int = 1, timeout_ms: int = 1000) -> dramatiq.Worker:
    dramatiq.actor(fn, actor_name=actor_name(queue), queue_name=queue, broker=broker)
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=threads, worker_timeout=timeout_ms)
    worker.start()
    return worker


def stop(worker: dramatiq.Worker, broker: WakingRedisBroker) -> None:
    # A consumer blocked on its wake list checks for a stop only at its idle timeout (60 s in some
    # tests); keep waking it while the worker stops, so no thread is left to steal the next test's
    # messages.
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 10_000})
    stopper.start()
    while stopper.is_alive():
        for queue in broker.get_declared_queues():
            broker.wake(queue, 1)
        stopper.join(timeout=0.1)
    broker.close()


def submit(url: str, job: Job, cap: int = 100) -> None:
    async def go():
        queue = RedisJobQueue.from_url(url, queue_cap=cap)
        await queue.submit(job)
        await queue.close()

    asyncio.run(go())


def test_an_idle_consumer_wakes_for_a_message_whatever_its_idle_timeout(db):
    url, _ = db
    # With a 60 s idle timeout, Dramatiq's polling consumer would sleep up to a minute between
    # empty fetches; a woken one takes the message as it arrives.
    broker = WakingRedisBroker(url=url, middleware=[])
    received = threading.Event()
    worker = worker_with(broker, lambda job: received.set(), queue=LLM, timeout_ms=60_000)
    try:
        time.sleep(1.5)  # let the consumer go idle, blocked on its wake list
        submit(url, Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=30, timeout_s=30))
        assert received.wait(timeout=10), "the idle consumer was not woken"
    finally:
        stop(worker, broker)


def test_messages_keep_dramatiqs_layout_and_are_acked_after_the_actor(db):
    url, client = db
    broker = WakingRedisBroker(url=url, middleware=[])
    seen: list[dict] = []
    done = threading.Event()

    def actor(job):
        seen.append(job)
        if len(seen) == 3:
            done.set()

    jobs = [Job.create(JobKind.TOKENIZE, {"content": str(i)}, model="m", deadline_s=30, timeout_s=30) for i in range(3)]
    for job in jobs:
        submit(url, job)
    keys = QueueKeys(AUX)
    assert len(FairQueue(client).order(keys)) == 3 and client.hlen(keys.messages_hash) == 3
    worker = worker_with(broker, actor, queue=AUX, threads=2)
    try:
        assert done.wait(timeout=10)
        assert [job["id"] for job in seen] == [job.id for job in jobs]  # FIFO
        time.sleep(0.5)  # acks are sent after the actor returns
        assert FairQueue(client).order(keys) == []
        assert client.hlen(keys.messages_hash) == 0
        assert client.scard(keys.unacked_set(broker.broker_id)) == 0
    finally:
        stop(worker, broker)


def test_requeued_messages_wake_another_consumer(db):
    url, _ = db
    first = WakingRedisBroker(url=url, middleware=[])
    first.declare_queue(LLM)
    consumer = first.consume(LLM, prefetch=5, timeout=60_000)
    for index in range(2):
        submit(url, Job.create(JobKind.COMPLETION, {"prompt": str(index)}, model="m", deadline_s=30, timeout_s=30))
    held = [next(consumer), next(consumer)]

    second = WakingRedisBroker(url=url, middleware=[])
    received = threading.Event()
    worker = worker_with(second, lambda job: received.set(), queue=LLM)
    try:
        time.sleep(1.0)  # idle, blocked on the wake list: the messages are held by the first
        assert not received.is_set()
        consumer.requeue(held)  # e.g. the first worker shutting down
        assert received.wait(timeout=10), "requeued messages did not wake the idle worker"
    finally:
        stop(worker, second)
        consumer.close()
        first.close()


def test_a_full_consumer_waits_for_an_ack_not_for_a_timer(db):
    url, _ = db
    broker = WakingRedisBroker(url=url, middleware=[])
    release = threading.Event()
    started: list[str] = []

    def actor(job):
        started.append(job["id"])
        if len(started) == 1:
            release.wait(timeout=30)

    for index in range(2):
        submit(url, Job.create(JobKind.COMPLETION, {"prompt": str(index)}, model="m", deadline_s=60, timeout_s=30))
    worker = dramatiq.Worker(broker, queues={LLM}, worker_threads=2, worker_timeout=60_000)
    worker.queue_prefetch = 1  # one slot: the second message must wait for the first's ack
    dramatiq.actor(actor, actor_name=actor_name(LLM), queue_name=LLM, broker=broker)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not started and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        assert len(started) == 1  # prefetch 1: the second waits
        release.set()
        deadline = time.monotonic() + 10  # far below the 60 s a timer-driven retry could take
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(started) == 2
    finally:
        stop(worker, broker)


def test_the_final_event_acknowledges_the_message_itself(db):
    url, client = db
    broker = WakingRedisBroker(url=url, middleware=[])
    broker.declare_queue(LLM)
    consumer = broker.consume(LLM, prefetch=1, timeout=1000)
    job = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=30, timeout_s=30)
    submit(url, job)
    message = next(consumer)
    keys = QueueKeys(LLM)
    assert client.sismember(keys.unacked_set(broker.broker_id), job.id)

    sinks = RedisEventSinks(client, broker_id=broker.broker_id, on_acked=broker.acked_by_job)
    sinks.for_job(job).emit(Event.of(EventType.RESULT, {"content": "done"}))
    assert not client.sismember(keys.unacked_set(broker.broker_id), job.id)
    assert client.hlen(keys.messages_hash) == 0
    assert 0 < client.ttl(events_key(job.id)) <= 10  # a finished stream expires soon

    calls_before = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    consumer.ack(message)  # Dramatiq's own ack: nothing left to do in Redis
    calls_after = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert calls_after == calls_before
    consumer.close()
    broker.close()


def test_cancelling_a_queued_job_takes_it_off_the_queue_and_tells_workers(db):
    url, client = db
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CANCEL_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation: subscribed before anything is sent

    async def submit_and_cancel() -> Job:
        queue = RedisJobQueue.from_url(url, queue_cap=100)
        job = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=30, timeout_s=30)
        handle = await queue.submit(job)
        await handle.cancel()
        await queue.close()
        return job

    job = asyncio.run(submit_and_cancel())
    keys = QueueKeys(LLM)
    assert FairQueue(client).order(keys) == [] and client.hlen(keys.messages_hash) == 0
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)  # None for the (ignored) subscribe confirmation
    assert message is not None and message["data"].decode() == job.id
    pubsub.close()


def test_the_cap_counts_waiting_jobs_per_queue(db):
    url, client = db

    async def fill() -> list[str]:
        queue = RedisJobQueue.from_url(url, queue_cap=2)
        outcomes = []
        for kind in (JobKind.COMPLETION, JobKind.COMPLETION, JobKind.COMPLETION, JobKind.TOKENIZE):
            try:
                await queue.submit(Job.create(kind, {"prompt": "x"}, model="m", deadline_s=30, timeout_s=30))
                outcomes.append("queued")
            except Exception as error:
                outcomes.append(f"{error.status}")
        await queue.close()
        return outcomes

    assert asyncio.run(fill()) == ["queued", "queued", "503", "queued"]
    assert len(FairQueue(client).order(QueueKeys(LLM))) == 2


@pytest.mark.slow
def test_a_job_may_wait_longer_than_the_redis_socket_timeout_for_its_first_event(db):
    # redis-py times a read out after 5 s; an XREAD BLOCK longer than that would fail a job that
    # merely waited its turn behind long generations.
    url, client = db
    job = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=30, timeout_s=30)
    sinks = RedisEventSinks(client)  # no message to acknowledge: the API side is under test
    answer = threading.Timer(6.5, lambda: sinks.for_job(job).emit(Event.of(EventType.RESULT, {"content": "late"})))

    async def wait_for_result() -> list[Event]:
        queue = RedisJobQueue.from_url(url, queue_cap=100)
        try:
            handle = await queue.submit(job)
            answer.start()
            return [event async for event in handle.events()]
        finally:
            await queue.close()

    events = asyncio.run(wait_for_result())
    answer.join()
    assert [event.type for event in events] == [EventType.RESULT]


def test_a_waiting_job_lost_with_redis_data_is_queued_again_and_answered(db):
    """A failover that promotes a replica the job had not reached yet (or a restart without
    persistence) loses the job's message and stream while its client waits: the client's handle
    queues it again, and a worker then answers it, well before its deadline."""
    url, client = db
    job = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", stream=True, deadline_s=30, timeout_s=30)

    def answer(payload: dict) -> None:
        taken = Job.model_validate(payload)
        with RedisEventSinks(client).for_job(taken) as sink:
            sink.emit(Event(EventType.RESULT, b'{"content":"again"}'))

    async def go() -> tuple[list[Event], float]:
        queue = RedisJobQueue.from_url(url, queue_cap=10)
        handle = await queue.submit(job)
        client.flushdb()  # the Redis the client now talks to never saw the job
        broker = WakingRedisBroker(url=url, middleware=[])
        worker = worker_with(broker, answer, queue=LLM)
        started = time.monotonic()
        try:
            events = [event async for event in handle.events()]
        finally:
            stop(worker, broker)
            await queue.close()
        return events, time.monotonic() - started

    events, waited_s = asyncio.run(go())
    assert [event.type for event in events] == [EventType.RESULT]
    assert events[0].value() == {"content": "again"}
    assert waited_s < 10, "the lost job waited for its deadline"
