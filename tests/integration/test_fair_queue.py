"""The fair queue on a real Redis, jobs queued by the API's own queue and fetched by the worker's
own broker: who is served next, with what weight, whatever one key floods; caps; cancels;
requeued jobs first; the positions the console and clients are shown."""

from __future__ import annotations

import asyncio
import collections

import pytest
import redis.asyncio as aioredis

from velesio_core.cluster_state import ClusterState
from velesio_core.errors import QueueFullError
from velesio_core.image_board import RedisImageBoard
from velesio_core.jobs import IMAGE_MODEL, Job, JobKind, JobTenant, Queue
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.fair import FairQueue, lane_of
from velesio_core.queue.keys import QueueKeys
from velesio_core.queue.redis_queue import RedisJobQueue, encode_job_message
from velesio_core.registry import CardPublisher, WorkerCard

LLM = Queue.LLM.for_model("m")
KEYS = QueueKeys(LLM)


@pytest.fixture
def db(redis_server):
    client = redis_server.client(14)
    client.flushdb()
    yield redis_server.url(14), client
    client.flushdb()


@pytest.fixture
def broker(db):
    url, _ = db
    broker = WakingRedisBroker(url=url, middleware=[])
    broker.declare_queue(LLM)
    yield broker
    broker.close()


def key(key_id: str, weight: int = 1, parent: tuple[str, int] | None = None) -> JobTenant:
    top_id, top_weight = parent or (key_id, weight)
    return JobTenant(key_id=key_id, weight=weight, top_id=top_id, top_weight=top_weight)


def job(tenant: JobTenant | None, *, stream: bool = False) -> Job:
    made = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", stream=stream, deadline_s=60, timeout_s=60)
    return made.model_copy(update={"tenant": tenant})


def submit(url: str, *jobs: Job, cap: int = 1000, key_cap: int = 0) -> list[object]:
    """Queue jobs as the API does; each outcome is its handle or the error it was refused with."""

    async def go() -> list[object]:
        queue = RedisJobQueue.from_url(url, queue_cap=cap)
        queue._key_queue_cap = key_cap  # the API's from_settings sets it from KEY_QUEUE_CAP
        outcomes: list[object] = []
        for each in jobs:
            try:
                outcomes.append(await queue.submit(each))
            except QueueFullError as error:
                outcomes.append(error)
        await queue.close()
        return outcomes

    return asyncio.run(go())


def flood(tenant: JobTenant | None, count: int) -> list[Job]:
    return [job(tenant) for _ in range(count)]


def fetched(broker: WakingRedisBroker, count: int) -> list[dict]:
    """The next ``count`` jobs a worker's consumer takes, one at a time, each acknowledged."""
    consumer = broker.consume(LLM, prefetch=1, timeout=1000)
    jobs = []
    while len(jobs) < count:
        message = next(consumer)
        if message is None:
            break
        jobs.append(message.args[0])
        consumer.ack(message)
    return jobs


def owners(jobs: list[dict]) -> list[str]:
    return [each["tenant"]["key_id"] if each["tenant"] else "api_tokens" for each in jobs]


def test_a_key_that_floods_the_queue_delays_only_itself(db, broker):
    url, _ = db
    submit(url, *flood(key("aaaa01"), 200))
    assert owners(fetched(broker, 1)) == ["aaaa01"]
    lone = job(key("bbbb01"))
    submit(url, lone)
    # Its turn comes at once: 199 jobs of the flooding key wait, and at most one of them goes first.
    assert lone.id in [each["id"] for each in fetched(broker, 2)]


def test_a_key_sending_one_job_at_a_time_gets_every_other_turn_against_a_flood(db, broker):
    url, _ = db
    submit(url, *flood(key("aaaa01"), 200))
    served = []
    for _ in range(20):
        submit(url, job(key("bbbb01")))
        served += owners(fetched(broker, 2))
    assert served.count("bbbb01") == 20, served


def test_weights_share_the_queue_in_their_ratio(db, broker):
    url, _ = db
    submit(url, *flood(key("aaaa01", weight=3), 150), *flood(key("bbbb01", weight=1), 150))
    counts = collections.Counter(owners(fetched(broker, 200)))
    assert counts == {"aaaa01": 150, "bbbb01": 50}


def test_minted_keys_share_their_parents_turn_between_them(db, broker):
    url, _ = db
    parent = ("aaaa01", 1)
    submit(
        url,
        *flood(key("aaaa01"), 60),
        *flood(key("cccc01", weight=2, parent=parent), 60),
        *flood(key("cccc02", weight=1, parent=parent), 60),
        *flood(key("bbbb01"), 60),
    )
    counts = collections.Counter(owners(fetched(broker, 80)))
    # Half to each top-level key; the parent's half split 1:2:1 by weight within its family.
    assert counts["bbbb01"] == 40
    assert (counts["aaaa01"], counts["cccc01"], counts["cccc02"]) == (10, 20, 10)


def test_api_tokens_jobs_have_a_lane_of_their_own(db, broker):
    url, _ = db
    submit(url, *flood(None, 100), *flood(key("aaaa01"), 100))
    counts = collections.Counter(owners(fetched(broker, 40)))
    assert counts == {"api_tokens": 20, "aaaa01": 20}


def test_a_key_idle_for_a_while_banks_no_credit(db, broker):
    url, _ = db
    submit(url, *flood(key("aaaa01"), 200))
    fetched(broker, 60)
    submit(url, *flood(key("bbbb01"), 60))
    # From its return on, it shares the queue; it does not get the 60 turns it "missed".
    assert collections.Counter(owners(fetched(broker, 40))) == {"aaaa01": 20, "bbbb01": 20}


def test_a_minted_key_idle_for_a_while_banks_no_credit_within_its_family(db, broker):
    url, _ = db
    parent = ("aaaa01", 1)
    submit(url, *flood(key("cccc01", parent=parent), 100), *flood(key("bbbb01"), 100))
    fetched(broker, 40)
    submit(url, *flood(key("cccc02", parent=parent), 40))
    counts = collections.Counter(owners(fetched(broker, 40)))
    assert counts == {"bbbb01": 20, "cccc01": 10, "cccc02": 10}


def test_requeued_jobs_come_before_any_lane(db, broker):
    url, _ = db
    submit(url, *flood(key("aaaa01"), 5), *flood(key("bbbb01"), 5))
    holder = broker.consume(LLM, prefetch=2, timeout=1000)
    held = [next(holder), next(holder)]
    holder.requeue(held)  # a draining worker's hand-back
    assert [each["id"] for each in fetched(broker, 2)] == [message.args[0]["id"] for message in held]


def test_the_order_shown_and_each_jobs_position_are_the_order_served(db, broker):
    url, client = db
    jobs = [
        *flood(key("aaaa01", weight=3), 12),
        *flood(key("cccc01", weight=2, parent=("bbbb01", 1)), 8),
        *flood(None, 6),
        *flood(key("bbbb01"), 5),
    ]
    submit(url, *jobs)
    first = [each["id"] for each in fetched(broker, 7)]  # so that the keys' turns are no longer even
    fair = FairQueue(client)
    shown = [raw.decode() for raw in fair.order(KEYS)]
    positions = {each.id: fair.position(KEYS, each.id) for each in jobs if each.id not in first}
    served = [each["id"] for each in fetched(broker, len(jobs))]
    assert sorted(first + served) == sorted(each.id for each in jobs)
    assert shown == served
    assert [positions[job_id] for job_id in served] == list(range(len(served)))
    assert fair.position(KEYS, first[0]) == -1  # no longer waiting


def test_a_streamed_jobs_handle_says_where_it_was_queued(db, broker):
    url, _ = db
    submit(url, *flood(key("aaaa01"), 10))
    (handle,) = submit(url, job(key("bbbb01"), stream=True))
    served = [each["id"] for each in fetched(broker, 11)]
    assert handle.queue_position == served.index(handle.job.id) == 1


def test_a_cancelled_job_leaves_its_lane_and_the_rest_are_still_served(db, broker):
    url, client = db
    a_jobs, b_jobs = flood(key("aaaa01"), 3), flood(key("bbbb01"), 1)

    async def queue_then_cancel_two() -> None:
        queue = RedisJobQueue.from_url(url, queue_cap=100)
        handles = [await queue.submit(each) for each in (*a_jobs, *b_jobs)]
        await handles[1].cancel()  # one of A's
        await handles[3].cancel()  # B's only job: its lane empties
        await queue.close()

    asyncio.run(queue_then_cancel_two())
    served = [each["id"] for each in fetched(broker, 10)]
    assert served == [a_jobs[0].id, a_jobs[2].id]
    assert client.hlen(KEYS.messages_hash) == 0
    later = job(key("bbbb01"))
    submit(url, later)
    assert [each["id"] for each in fetched(broker, 1)] == [later.id]


def test_the_per_key_cap_refuses_the_flooding_key_only(db):
    url, _ = db
    outcomes = submit(url, *flood(key("aaaa01"), 5), job(key("bbbb01")), *flood(None, 5), cap=100, key_cap=3)
    refused = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, QueueFullError)]
    assert refused == [3, 4]
    assert "of this API key" in outcomes[3].message and outcomes[3].status == 503
    # A minted key has a lane, and a cap, of its own.
    minted = submit(url, *flood(key("cccc01", parent=("aaaa01", 1)), 3), cap=100, key_cap=3)
    assert not any(isinstance(outcome, QueueFullError) for outcome in minted)


def test_the_queue_cap_still_counts_every_waiting_job(db, broker):
    url, client = db
    outcomes = submit(url, *flood(key("aaaa01"), 3), *flood(key("bbbb01"), 3), cap=4, key_cap=3)
    assert [isinstance(outcome, QueueFullError) for outcome in outcomes] == [False] * 4 + [True] * 2
    assert "4 jobs are already waiting" in outcomes[4].message
    # Jobs that went back on the queue count too.
    holder = broker.consume(LLM, prefetch=1, timeout=1000)
    holder.requeue([next(holder)])
    assert submit(url, job(key("cccc01")), cap=4, key_cap=3)[0].__class__ is QueueFullError
    assert len(FairQueue(client).order(KEYS)) == 4


def test_an_emptied_queue_leaves_no_scheduler_state_behind(db, broker):
    url, client = db
    submit(url, *flood(key("aaaa01", weight=2), 4), *flood(key("cccc01", parent=("aaaa01", 2)), 4), *flood(None, 4))
    assert len(fetched(broker, 20)) == 12
    left = {raw.decode() for raw in client.scan_iter(f"{KEYS.ready_list}*")}
    assert left <= {KEYS.wake_list}, left


def test_the_console_lists_waiting_jobs_in_the_order_served_and_cancels_from_a_lane(db, broker):
    url, client = db
    CardPublisher(client).publish(WorkerCard("w-1", [LLM], [], broker_id=broker.broker_id))
    heavy, light = flood(key("aaaa01", weight=2), 6), flood(key("bbbb01"), 4)
    submit(url, *heavy, *light)

    async def look_cancel_look() -> tuple[dict, bool, dict]:
        redis = aioredis.Redis.from_url(url)
        before = await ClusterState(redis).snapshot()
        cancelled = await ClusterState(redis).cancel(light[0].id)
        after = await ClusterState(redis).snapshot()
        await redis.aclose()
        return before, cancelled, after

    before, cancelled, after = asyncio.run(look_cancel_look())
    (queue,) = before["queues"]
    assert queue["depth"] == 10 and queue["per_key"] == {"aaaa01": 6, "bbbb01": 4}
    assert [each["position"] for each in before["jobs"]] == list(range(1, 11))
    # Weight 2 against 1: two of A's for each of B's, B's first going second (the names break ties).
    a, b = "aaaa01", "bbbb01"
    assert [each["key_id"] for each in before["jobs"]][:6] == [a, b, a, a, b, a]
    assert cancelled and after["queues"][0]["depth"] == 9
    served = [each["id"] for each in fetched(broker, 20)]
    assert [each["id"] for each in after["jobs"]] == served and light[0].id not in served


def test_an_image_jobs_place_is_its_turn_in_the_fair_order(db):
    url, client = db
    sd = QueueKeys(Queue.SD.for_model(IMAGE_MODEL))
    fair = FairQueue(client)

    def image(tenant: JobTenant) -> Job:
        made = Job.create(JobKind.TXT2IMG, {"prompt": "x"}, model=IMAGE_MODEL, deadline_s=60, timeout_s=60)
        return made.model_copy(update={"tenant": tenant})

    flooded = [image(key("aaaa01")) for _ in range(5)]
    lone = image(key("bbbb01"))
    for each in (*flooded, lone):
        fair.enqueue(sd, each.id, encode_job_message(each), lane_of(each.tenant))

    async def places() -> tuple[int | None, int | None, int]:
        redis = aioredis.Redis.from_url(url)
        board = RedisImageBoard(redis)
        lone_place, last_place = await board.position(lone.id), await board.position(flooded[-1].id)
        waiting = (await board.current()).waiting
        await redis.aclose()
        return lone_place, last_place, waiting

    # FIFO would have put the lone job sixth; the fair queue serves it after the flooder's first.
    assert asyncio.run(places()) == (1, 5, 6)
