"""d. Pickup latency after an idle second: Dramatiq's stock Redis consumer against velesio's
waking one, side by side in one run, on the same Redis, with no-op actors; and, as an upper
bound in the real worker, the full round trip of a job sent after an idle second."""

from __future__ import annotations

import asyncio
import threading
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.report import Section, percentile
from velesio_core.queue.broker import WakingRedisBroker


def _stamped_worker(broker: dramatiq.Broker, queue: str, arrivals: dict[int, float]) -> dramatiq.Worker:
    done = threading.Condition()

    def actor(index: int) -> None:
        with done:
            arrivals[index] = time.time()

    dramatiq.actor(actor, actor_name=f"stamp_{queue}", queue_name=queue, broker=broker)
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1)
    worker.start()
    return worker


def idle_pickup(section: Section, redis_url: str, samples: int, idle_s: float = 1.0) -> float:
    stock = RedisBroker(url=redis_url, namespace="bench-stock", middleware=[])
    waking = WakingRedisBroker(url=redis_url, namespace="bench-waking", middleware=[])
    arrivals: dict[str, dict[int, float]] = {"stock": {}, "waking": {}}
    workers = [
        _stamped_worker(stock, "pickup", arrivals["stock"]),
        _stamped_worker(waking, "pickup", arrivals["waking"]),
    ]
    actors = {"stock": stock.get_actor("stamp_pickup"), "waking": waking.get_actor("stamp_pickup")}
    sent: dict[str, dict[int, float]] = {"stock": {}, "waking": {}}
    try:
        time.sleep(idle_s)
        for index in range(samples):
            for name, actor in actors.items():
                sent[name][index] = time.time()
                actor.send(index)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(index in arrivals[n] for n in actors):
                time.sleep(0.001)
            time.sleep(idle_s)  # idle again before the next message
    finally:
        for worker in workers:
            worker.stop(timeout=3000)
        stock.close()
        waking.close()
    delays = {name: [arrivals[name][i] - sent[name][i] for i in sent[name] if i in arrivals[name]]
              for name in sent}  # fmt: skip
    for name, label in (("stock", "Dramatiq's stock consumer"), ("waking", "velesio's waking consumer")):
        p50, p99 = percentile(delays[name], 0.5), percentile(delays[name], 0.99)
        measured = f"{p50 * 1000:.2f} ms / {p99 * 1000:.2f} ms"
        section.add(f"d. pickup after {idle_s:g} s idle, {label}, p50 / p99", measured)
    waking_p99 = percentile(delays["waking"], 0.99)
    section.add("d. **pickup p99**, velesio", f"{waking_p99 * 1000:.2f} ms", "≤ 5 ms", waking_p99 <= 0.005)
    return waking_p99


def idle_round_trip(section: Section, redis_url: str, model: str, samples: int, idle_s: float = 1.0) -> None:
    """A tokenize job through the real worker after an idle second: pickup plus the job itself."""
    from velesio_core.events import final_result
    from velesio_core.jobs import Job, JobKind
    from velesio_core.queue.redis_queue import RedisJobQueue

    async def run() -> list[float]:
        queue = RedisJobQueue.from_url(redis_url, queue_cap=100)
        times = []
        for _ in range(samples):
            await asyncio.sleep(idle_s)
            job = Job.create(JobKind.TOKENIZE, {"content": "hello"}, model=model, deadline_s=30, timeout_s=30)
            started = time.perf_counter()
            await final_result((await queue.submit(job)).events())
            times.append(time.perf_counter() - started)
        await queue.close()
        return times

    times = asyncio.run(run())
    section.add(f"d. tokenize job through the real worker after {idle_s:g} s idle, p50 / p99 (pickup + job)",
                f"{percentile(times, .5) * 1000:.2f} ms / {percentile(times, .99) * 1000:.2f} ms")  # fmt: skip
