"""The reaper on a real Redis: a worker that stopped beating is reaped once, its unstarted jobs go
back to their queue, its jobs that had sent output end with an error event, and whatever it
writes afterwards is refused."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from velesio_core.cancellation import JobCancelled, Reason
from velesio_core.events import Event, EventType
from velesio_core.jobs import Job, JobKind, Queue
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.event_sink import RedisEventSinks
from velesio_core.queue.fair import FairQueue
from velesio_core.queue.keys import BEATS_KEY, WORKERS_KEY, QueueKeys, events_key
from velesio_core.queue.reaper import Liveness, Orphans
from velesio_core.queue.redis_queue import RedisJobQueue
from velesio_core.registry import CardPublisher, WorkerCard

LLM = Queue.LLM.for_model("m")


@pytest.fixture
def db(redis_server):
    client = redis_server.client(13)
    client.flushdb()
    yield redis_server.url(13), client
    client.flushdb()


def submit(url: str, *jobs: Job) -> None:
    async def go():
        queue = RedisJobQueue.from_url(url, queue_cap=100)
        for job in jobs:
            await queue.submit(job)
        await queue.close()

    asyncio.run(go())


def job() -> Job:
    return Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", stream=True, deadline_s=30, timeout_s=30)


def a_worker_that_took(url: str, client, count: int, name: str = "w-dead") -> tuple[WakingRedisBroker, Liveness]:
    """A worker as the real one starts (card with its broker, a beat), that fetched ``count``
    messages the way Dramatiq does (into its broker's unacked set)."""
    broker = WakingRedisBroker(url=url, middleware=[])
    broker.declare_queue(LLM)
    CardPublisher(client).publish(WorkerCard(name, [LLM], [], broker_id=broker.broker_id))
    liveness = Liveness(client, name)
    liveness.beat()
    fetched = broker.do_fetch(LLM, count)
    assert len(fetched) == count
    return broker, liveness


def silence(client, name: str, seconds: float = 10.0) -> None:
    """The worker's last beat was ``seconds`` ago (on Redis's clock)."""
    now_s, now_us = client.time()
    client.zadd(BEATS_KEY, {name: now_s * 1000 + now_us // 1000 - seconds * 1000})


def waiting(client) -> list[bytes]:
    """The queue's waiting message ids, in the order a fetch would take them."""
    return FairQueue(client).order(QueueKeys(LLM))


def stream_types(client, job_id: str) -> list[str]:
    return [fields[b"t"].decode() for _, fields in client.xrange(events_key(job_id))]


def test_a_silent_workers_unstarted_jobs_go_back_to_the_head_of_their_queue(db):
    url, client = db
    first, second, pending = job(), job(), job()
    submit(url, first, second)
    broker, _ = a_worker_that_took(url, client, 2)
    submit(url, pending)
    keys = QueueKeys(LLM)
    client.delete(keys.wake_list)
    # A live worker reaps the dead one.
    live = Liveness(client, "w-live")
    live.beat()
    live.reap()
    assert waiting(client) == [pending.id.encode()], "reaped too early"

    silence(client, "w-dead")
    live.reap()
    # Back on the ready list, fetched before any key's new jobs.
    queued = [item.decode() for item in waiting(client)]
    assert sorted(queued[:2]) == sorted([first.id, second.id]) and queued[2] == pending.id
    assert client.llen(keys.wake_list) == 2
    assert client.scard(keys.unacked_set(broker.broker_id)) == 0
    assert client.hget(WORKERS_KEY, "w-dead") is None
    assert client.zscore(BEATS_KEY, "w-dead") is None
    assert client.zscore(BEATS_KEY, "w-live") is not None
    # The messages are whole again: another worker fetches and runs them.
    other = WakingRedisBroker(url=url, middleware=[])
    assert len(other.do_fetch(LLM, 3)) == 3
    broker.close()
    other.close()


def test_a_silent_workers_job_that_had_streamed_ends_with_an_error_event(db):
    url, client = db
    streaming, unstarted = job(), job()
    submit(url, streaming, unstarted)
    broker, _ = a_worker_that_took(url, client, 2)
    sinks = RedisEventSinks(client, broker_id=broker.broker_id)
    sinks.for_job(streaming).emit(Event.of(EventType.STARTED, {"worker": "w-dead", "started_at": 0.0}))
    sinks.for_job(streaming).emit(Event(EventType.TOKEN, b'{"content":"hi"}'))
    sinks.for_job(unstarted).emit(Event.of(EventType.STARTED, {"worker": "w-dead", "started_at": 0.0}))

    silence(client, "w-dead")
    Liveness(client, "w-live").reap()

    assert stream_types(client, streaming.id) == ["queued", "started", "token", "error"]
    error = orjson.loads(client.xrange(events_key(streaming.id))[-1][1][b"d"])
    assert error["code"] == 503 and "stopped answering" in error["message"]
    assert 0 < client.ttl(events_key(streaming.id)) <= 10
    keys = QueueKeys(LLM)
    assert not client.hexists(keys.messages_hash, streaming.id), "an answered job's message was kept"
    assert waiting(client) == [unstarted.id.encode()]
    broker.close()


def test_a_reaped_worker_can_write_nothing_more_to_its_lost_jobs(db):
    url, client = db
    lost = job()
    submit(url, lost)
    broker, _ = a_worker_that_took(url, client, 1)
    sink = RedisEventSinks(client, broker_id=broker.broker_id).for_job(lost)
    silence(client, "w-dead")
    Liveness(client, "w-live").reap()

    # It was only cut off, and comes back: its token and its result must not reach the client,
    # whose job now runs elsewhere.
    with pytest.raises(JobCancelled) as token:
        sink.emit(Event(EventType.TOKEN, b'{"content":"late"}'))
    assert token.value.reason is Reason.LOST
    with pytest.raises(JobCancelled):
        sink.emit(Event(EventType.RESULT, b'{"content":"late"}'))
    assert stream_types(client, lost.id) == ["queued"]
    assert waiting(client) == [lost.id.encode()]
    broker.close()


def test_pipelined_tokens_arrive_in_order_and_a_reap_still_stops_the_job(db):
    url, client = db
    running, lost = job(), job()
    submit(url, running, lost)
    broker, _ = a_worker_that_took(url, client, 2)
    sinks = RedisEventSinks(client, broker_id=broker.broker_id)
    pool = client.connection_pool
    with sinks.for_job(running) as sink:
        for index in range(50):
            sink.emit(Event(EventType.TOKEN, b'{"content":"%d"}' % index))
        sink.emit(Event(EventType.RESULT, b'{"content":""}'))
    written = [fields[b"d"] for _, fields in client.xrange(events_key(running.id))][1:]
    assert written == [b'{"content":"%d"}' % index for index in range(50)] + [b'{"content":""}']
    assert not pool._in_use_connections, "the job kept its connection"

    with sinks.for_job(lost) as sink:
        sink.emit(Event(EventType.TOKEN, b'{"content":"first"}'))
        silence(client, "w-dead")
        Liveness(client, "w-live").reap()  # reaped mid-stream: the job ended with an error event
        with pytest.raises(JobCancelled) as stopped:
            for index in range(1000):
                sink.emit(Event(EventType.TOKEN, b'{"content":"late %d"}' % index))
        assert stopped.value.reason is Reason.LOST
    assert stream_types(client, lost.id) == ["queued", "token", "error"]
    assert not pool._in_use_connections
    broker.close()


def test_each_dead_worker_is_reaped_by_exactly_one_of_many_reapers(db):
    url, client = db
    submit(url, job())
    broker, _ = a_worker_that_took(url, client, 1)
    silence(client, "w-dead")
    reapers = [Liveness(client, f"w{index}") for index in range(8)]
    reports = [reaper._reap(keys=[BEATS_KEY, WORKERS_KEY], args=reaper._args) for reaper in reapers]
    assert [report for report in reports if report] == [[b"w-dead", 1, 0]]
    assert len(waiting(client)) == 1
    broker.close()


def test_a_reaped_worker_that_comes_back_learns_it_from_its_next_beat(db):
    url, client = db
    broker, liveness = a_worker_that_took(url, client, 0)
    assert liveness.beat(), "a beating worker was taken for reaped"
    silence(client, "w-dead")
    Liveness(client, "w-live").reap()
    assert client.hget(WORKERS_KEY, "w-dead") is None
    assert not liveness.beat()  # so the worker publishes its card again at once
    assert liveness.beat()
    broker.close()


def test_a_stopping_worker_hands_back_what_it_still_holds_and_leaves_no_key(db, caplog):
    url, client = db
    held = job()
    submit(url, held)
    broker, liveness = a_worker_that_took(url, client, 1)  # e.g. taken by a thread as the drain began
    other, _ = a_worker_that_took(url, client, 0, name="w-live")
    liveness.forget()
    # A clean stop is not a death: no "silent" warning, and only the stopping worker goes.
    assert not [record for record in caplog.records if record.levelname == "WARNING"]
    assert client.hget(WORKERS_KEY, "w-live") is not None and client.zscore(BEATS_KEY, "w-live")
    other.close()
    keys = QueueKeys(LLM)
    assert waiting(client) == [held.id.encode()]
    assert not client.exists(keys.unacked_set(broker.broker_id))
    assert client.hget(WORKERS_KEY, "w-dead") is None and client.zscore(BEATS_KEY, "w-dead") is None
    broker.close()


def test_a_live_workers_fetch_whose_reply_was_lost_goes_back_after_two_sweeps(db):
    """Redis ran a fetch whose reply the worker never read (its link dropped): the messages sit in
    its unacked set while it beats on. The sweep hands back those no thread holds, once they were
    unheld at two sweeps running; what a thread runs stays."""
    url, client = db
    lost, streamed, running = job(), job(), job()
    submit(url, lost, streamed, running)
    broker, _ = a_worker_that_took(url, client, 3, name="w-live")
    sinks = RedisEventSinks(client, broker_id=broker.broker_id)
    sinks.for_job(streamed).emit(Event(EventType.TOKEN, b'{"content":"hi"}'))
    keys = QueueKeys(LLM)
    client.delete(keys.wake_list)
    orphans = Orphans(client, [keys], broker.broker_id)
    held = frozenset({running.id})

    assert orphans.sweep(held) == 0, "a message handed back at its first sighting"
    assert client.scard(keys.unacked_set(broker.broker_id)) == 3
    assert orphans.sweep(held) == 2
    assert waiting(client) == [lost.id.encode()]
    assert client.llen(keys.wake_list) == 1
    assert stream_types(client, streamed.id)[-1] == "error"  # it had sent output: ended, never run twice
    assert client.smembers(keys.unacked_set(broker.broker_id)) == {running.id.encode()}
    assert orphans.sweep(held) == 0 and orphans.sweep(held) == 0  # the running one stays
    broker.close()


def test_the_broker_holds_what_it_handed_to_a_thread_until_acknowledged(db):
    url, _ = db
    taken = job()
    submit(url, taken)
    broker = WakingRedisBroker(url=url, middleware=[])
    broker.declare_queue(LLM)
    consumer = broker.consume(LLM, prefetch=1, timeout=100)
    message = next(message for message in consumer if message is not None)
    assert broker.held_message_ids() == {taken.id}
    consumer.ack(message)
    assert broker.held_message_ids() == frozenset()
    consumer.close()
    broker.close()


def test_the_events_of_one_emit_are_one_fenced_write_read_back_one_by_one(db):
    url, client = db
    running, lost = job(), job()

    async def queued():
        queue = RedisJobQueue.from_url(url, queue_cap=100)
        return queue, await queue.submit(running), await queue.submit(lost)

    loop = asyncio.new_event_loop()
    queue, handle, _ = loop.run_until_complete(queued())
    broker, _ = a_worker_that_took(url, client, 2)
    sinks = RedisEventSinks(client, broker_id=broker.broker_id)
    tokens = [Event(EventType.TOKEN, b'{"content":"%d"}' % index) for index in range(7)]
    commands_before = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    with sinks.for_job(running) as sink:
        sink.emit(*tokens[:3])
        sink.emit(*tokens[3:], Event(EventType.RESULT, b'{"content":""}'))
    # Two writes of emit.lua for seven tokens (the result is finish.lua's own write).
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] - commands_before == 3

    async def read():
        return [event async for event in handle.events()]

    read_back = loop.run_until_complete(read())
    assert read_back == [*tokens, Event(EventType.RESULT, b'{"content":""}')]

    with sinks.for_job(lost) as sink:
        sink.emit(Event(EventType.TOKEN, b'{"content":"first"}'))
        silence(client, "w-dead")
        Liveness(client, "w-live").reap()
        with pytest.raises(JobCancelled) as stopped:
            for _ in range(1000):
                sink.emit(*tokens)
        assert stopped.value.reason is Reason.LOST
    # Not one token of a refused batch landed after the reaper's error.
    assert stream_types(client, lost.id) == ["queued", "token", "error"]
    loop.run_until_complete(queue.close())
    loop.close()
    broker.close()
