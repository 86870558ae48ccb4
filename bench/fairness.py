"""f. The fair queue: who waits behind a flooding key, how weights share a queue, and what the
lanes cost against Dramatiq's one list.

The scheduler is measured on its own: jobs are enqueued as the API enqueues them (fairq.lua,
without the event stream) and run by a real Dramatiq worker on velesio's broker whose actor
sleeps a fixed run time instead of generating, so what varies is the queue alone.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
import uuid
from collections.abc import Callable

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.report import Section, percentile
from velesio_core.jobs import Job, JobKind, JobTenant, Queue
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.queue.fair import FairQueue, Lane, lane_of
from velesio_core.queue.keys import QueueKeys
from velesio_core.queue.redis_queue import actor_name, encode_job_message

QUEUE = Queue.LLM.for_model("bench-fair")
KEYS = QueueKeys(QUEUE)
#: Worker threads (and prefetch), as a worker with two llama-server slots runs them.
THREADS = 2


def tenant(key_id: str, weight: int = 1) -> JobTenant:
    return JobTenant(key_id=key_id, weight=weight, top_id=key_id, top_weight=weight)


class SleepingWorker:
    """A real Dramatiq worker on velesio's broker; each job sleeps ``run_s``, and ``on_start``
    hears of it as it starts."""

    def __init__(self, redis_url: str, run_s: float, on_start: Callable[[dict], None]) -> None:
        self.broker = WakingRedisBroker(url=redis_url, middleware=[])
        self._done: dict[str, threading.Event] = {}

        def run(job: dict) -> None:
            on_start(job)
            time.sleep(run_s)
            self.done(job["id"]).set()

        dramatiq.actor(run, actor_name=actor_name(QUEUE), queue_name=QUEUE, broker=self.broker)
        self.worker = dramatiq.Worker(self.broker, queues={QUEUE}, worker_threads=THREADS, worker_timeout=100)
        self.worker.queue_prefetch = THREADS

    def done(self, job_id: str) -> threading.Event:
        return self._done.setdefault(job_id, threading.Event())

    def __enter__(self) -> SleepingWorker:
        self.worker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.broker.draining.set()  # hand back what is prefetched; the flood is dropped with the db
        self.worker.stop(timeout=5000)
        self.broker.close()


class Enqueuer:
    def __init__(self, client: redis.Redis) -> None:
        self._fair = FairQueue(client)
        self.sent: dict[str, float] = {}

    def send(self, key: JobTenant | None) -> str:
        job = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="bench-fair", deadline_s=600, timeout_s=600)
        job = job.model_copy(update={"tenant": key})
        self.sent[job.id] = time.perf_counter()
        self._fair.enqueue(KEYS, job.id, encode_job_message(job), lane_of(key))
        return job.id


def flooding_key_and_lone_key(section: Section, redis_url: str, samples: int, run_s: float = 0.1) -> None:
    """Key A keeps 200 jobs queued; key B sends one job at a time and waits for it."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    enqueuer = Enqueuer(client)
    flooder, lone = tenant("aaaaaaaaaaaa"), tenant("bbbbbbbbbbbb")
    started: dict[str, float] = {}

    def on_start(job: dict) -> None:
        started[job["id"]] = time.perf_counter()
        if job["tenant"]["key_id"] == flooder.key_id:
            enqueuer.send(flooder)  # one served, one more queued: the flood stays 200 deep

    for _ in range(200):
        enqueuer.send(flooder)
    waits = []
    with SleepingWorker(redis_url, run_s, on_start) as worker:
        time.sleep(3 * run_s)
        for _ in range(samples):
            job_id = enqueuer.send(lone)
            worker.done(job_id).wait(timeout=60)
            waits.append(started[job_id] - enqueuer.sent[job_id])
    client.flushdb()
    p50, p99 = percentile(waits, 0.5), percentile(waits, 0.99)
    target = run_s + 0.050
    section.add(
        f"f. key B's queue wait, one job at a time, while key A keeps 200 queued; p50 / p99 ({samples} jobs)",
        f"{p50 * 1000:.0f} ms / {p99 * 1000:.0f} ms",
        f"p99 ≤ one job's run ({run_s * 1000:.0f} ms) + 50 ms",
        p99 <= target,
    )


def fifo_wait_for_contrast(section: Section, redis_url: str, run_s: float = 0.1) -> None:
    """The same lone job behind 200 on Dramatiq's own FIFO (one sample: it waits the whole flood)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    stock = RedisBroker(url=redis_url, middleware=[])
    started: dict[str, float] = {}
    done = threading.Event()

    def run(job: dict) -> None:
        started[job["id"]] = time.perf_counter()
        time.sleep(run_s)
        if job["id"] == "lone":
            done.set()

    actor = dramatiq.actor(run, actor_name="fifo", queue_name=QUEUE, broker=stock)
    for index in range(200):
        actor.send({"id": f"a{index}"})
    sent = time.perf_counter()
    actor.send({"id": "lone"})
    worker = dramatiq.Worker(stock, queues={QUEUE}, worker_threads=THREADS, worker_timeout=100)
    worker.queue_prefetch = THREADS
    worker.start()
    done.wait(timeout=200 * run_s + 30)
    worker.stop(timeout=5000)
    stock.close()
    client.flushdb()
    section.add(
        "f. the same lone job behind the 200 on Dramatiq's FIFO, for contrast (one job)",
        f"{(started['lone'] - sent) * 1000:.0f} ms",
    )


def weighted_floods(section: Section, redis_url: str, seconds: float, run_s: float = 0.01) -> None:
    """Keys A (weight 3) and B (weight 1) each keep 200 jobs queued; jobs served per key."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    enqueuer = Enqueuer(client)
    heavy, light = tenant("aaaaaaaaaaaa", 3), tenant("bbbbbbbbbbbb", 1)
    by_id = {heavy.key_id: heavy, light.key_id: light}
    served: list[tuple[float, str]] = []

    def on_start(job: dict) -> None:
        key_id = job["tenant"]["key_id"]
        served.append((time.perf_counter(), key_id))
        enqueuer.send(by_id[key_id])

    for _ in range(200):
        enqueuer.send(heavy)
        enqueuer.send(light)
    with SleepingWorker(redis_url, run_s, on_start):
        begun = time.perf_counter()
        time.sleep(seconds)
    client.flushdb()
    # Past the first second, with both floods long established.
    counts = collections.Counter(key_id for at, key_id in served if begun + 1.0 <= at <= begun + seconds)
    ratio = counts[heavy.key_id] / max(1, counts[light.key_id])
    section.add(
        f"f. two flooding keys, weights 3 and 1: jobs served in {seconds - 1:g} s ({run_s * 1000:.0f} ms each)",
        f"{counts[heavy.key_id]} : {counts[light.key_id]} = {ratio:.2f} : 1",
        "3 : 1 within 10 %",
        abs(ratio - 3) <= 0.3,
    )


def enqueue_fetch_cost(section: Section, redis_url: str, jobs: int) -> None:
    """Per message, from a client on the same machine: Dramatiq's own enqueue and fetch (the list
    velesio used before) against the fair queue's, with 1 and 100 keys sharing the queue."""
    client = redis.Redis.from_url(redis_url)
    message = b"x" * 600  # about a small completion job's encoded message
    stock = RedisBroker(url=redis_url, middleware=[])
    fair = FairQueue(client)
    lanes = {count: [Lane(f"{index:012x}", 1, f"{index:012x}", 1) for index in range(count)] for count in (1, 100)}
    results: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)

    def timed(enqueue: Callable[[int], object], fetch: Callable[[], object]) -> tuple[float, float]:
        client.flushdb()
        begun = time.perf_counter()
        for index in range(jobs):
            enqueue(index)
        enqueued = time.perf_counter()
        for _ in range(jobs):
            fetch()
        fetched = time.perf_counter()
        return (enqueued - begun) / jobs, (fetched - enqueued) / jobs

    stock_enqueue, stock_fetch = stock._dispatch("enqueue"), stock._dispatch("fetch")
    broker_id = str(uuid.uuid4())
    for _ in range(3):  # the sides alternate, so that drift on the shared machine hits each alike
        results["Dramatiq's list (before)"].append(
            timed(lambda index: stock_enqueue(QUEUE, f"m{index}", message), lambda: stock_fetch(QUEUE, 1))
        )
        for count, keys in lanes.items():
            results[f"fair queue, {count} key{'s' if count > 1 else ''}"].append(
                timed(
                    lambda index, keys=keys: fair.enqueue(KEYS, f"m{index}", message, keys[index % len(keys)]),
                    lambda: fair.fetch(KEYS, 1, broker_id=broker_id, now_ms=0),
                )
            )
    for name, rounds in results.items():
        enqueue_s = statistics.median(enqueue for enqueue, _ in rounds)
        fetch_s = statistics.median(fetch for _, fetch in rounds)
        measured = f"{enqueue_s * 1e6:.0f} µs / {fetch_s * 1e6:.0f} µs"
        section.add(f"f. enqueue / fetch per job, {name}, {jobs} jobs deep (median of 3)", measured)

    # A streamed job's enqueue also counts its position; the console lists the first 100 in order.
    client.flushdb()
    keys = lanes[100]
    depth = 256
    for index in range(depth):
        fair.enqueue(KEYS, f"m{index}", message, keys[index % len(keys)])
    for name, call in (
        (f"position of the last of {depth} jobs waiting over 100 keys (a stream's header)",
         lambda: fair.position(KEYS, f"m{depth - 1}")),
        (f"the first 100 of those {depth} in order (the console, once a second)", lambda: fair.order(KEYS, 100)),
    ):  # fmt: skip
        times = []
        for _ in range(50):
            begun = time.perf_counter()
            call()
            times.append(time.perf_counter() - begun)
        section.add(f"f. {name}, median", f"{statistics.median(times) * 1e6:.0f} µs")
    client.flushdb()
    stock.close()


def fairness(section: Section, redis_url: str, quick: bool) -> None:
    print("bench: a flooding key and a key sending one job at a time ...", flush=True)
    flooding_key_and_lone_key(section, redis_url, 30 if quick else 100)
    fifo_wait_for_contrast(section, redis_url)
    print("bench: two flooding keys weighted 3 and 1 ...", flush=True)
    weighted_floods(section, redis_url, 4 if quick else 11)
    print("bench: enqueue and fetch cost, FIFO vs fair ...", flush=True)
    enqueue_fetch_cost(section, redis_url, 1000 if quick else 5000)
    section.notes += [
        "Jobs are enqueued as the API enqueues them (fairq.lua, without opening the job's event stream) and",
        f"run by a real Dramatiq worker on velesio's broker with {THREADS} threads and prefetch {THREADS}, as a",
        "worker with two llama-server slots runs them; the actor sleeps a fixed run time instead of generating,",
        "so the figures are the scheduler's. The cost rows time one client round trip per call to this machine's",
        "Redis, the sides alternating.",
    ]
