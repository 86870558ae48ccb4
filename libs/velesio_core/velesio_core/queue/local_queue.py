"""A job queue inside one process, for a worker that serves its backend alone (API=false).

Same contract as the Redis queue (a cap, deadlines, timeouts, cancellation), no Redis: jobs run
on threads of this process, at most ``slots`` generations and one image job at a time, and their
events come back to the event loop that serves HTTP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from ..cancellation import Reason
from ..errors import GatewayError, unavailable
from ..events import Event
from ..image_board import LocalImageBoard
from ..jobs import Job
from ..metrics.queue import CANCELLED, EXPIRED, REJECTED
from ..supervision import AUX_THREADS, JobSupervisor
from .event_sink import LoopEventSink
from .interface import RETRY_AFTER_S, each_event, timed_out


class LocalJobQueue:
    def __init__(
        self, supervisor: JobSupervisor, *, slots: int, queue_cap: int, board: LocalImageBoard | None = None
    ) -> None:
        self._supervisor = supervisor
        self._generation = ThreadPoolExecutor(slots, thread_name_prefix="velesio-generate")
        self._aux = ThreadPoolExecutor(AUX_THREADS, thread_name_prefix="velesio-aux")
        # One thread: a diffusers pipeline runs one job at a time.
        self._images = ThreadPoolExecutor(1, thread_name_prefix="velesio-image")
        self._board = board
        self._queue_cap = queue_cap
        self._lock = threading.Lock()
        self._waiting = 0

    async def submit(self, job: Job) -> LocalJobHandle:
        with self._lock:
            if self._waiting >= self._queue_cap:
                REJECTED.labels(job.queue, job.model).inc()
                raise unavailable(
                    f"the server is busy: {self._queue_cap} jobs are already waiting; retry shortly",
                    retry_after_s=RETRY_AFTER_S,
                )
            self._waiting += 1
        loop = asyncio.get_running_loop()
        sink = LoopEventSink(loop)
        if job.kind.is_image:
            pool = self._images
            if self._board is not None:
                self._board.queued(job)
        else:
            pool = self._generation if job.kind.holds_generation_slot else self._aux
        loop.run_in_executor(pool, self._execute, job, sink)
        return LocalJobHandle(job, sink, self._supervisor)

    def _execute(self, job: Job, sink: LoopEventSink) -> None:
        with self._lock:
            self._waiting -= 1
        try:
            self._supervisor.execute(job, sink)
        finally:
            if job.kind.is_image and self._board is not None:
                self._board.end(job)  # also when it was dropped unrun

    async def close(self) -> None:
        for pool in (self._generation, self._aux, self._images):
            pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._supervisor.drain, 0)
        self._supervisor.close()


class LocalJobHandle:
    def __init__(self, job: Job, sink: LoopEventSink, supervisor: JobSupervisor) -> None:
        self.job = job
        self.queue_position: int | None = None
        self._events = sink.queue
        self._supervisor = supervisor

    def events(self) -> AsyncIterator[Event]:
        return each_event(self.batches())

    async def batches(self) -> AsyncGenerator[list[Event], None]:
        give_up_at = self.job.deadline
        started = False
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation (the client left)
                # that lands as an event arrives, and the request then waits out the job's timeout.
                async with asyncio.timeout(max(0.0, give_up_at - time.time())):
                    event = await self._events.get()
            except TimeoutError:
                self._supervisor.cancel(self.job.id, Reason.TIMEOUT)
                if not started:
                    EXPIRED.labels(self.job.queue, self.job.model).inc()
                raise self._timed_out(started) from None
            if not started:
                started = True
                give_up_at = time.time() + self.job.timeout_s + 1.0
            batch = [event]
            while not event.type.is_final and not self._events.empty():
                event = self._events.get_nowait()
                batch.append(event)
            yield batch
            if event.type.is_final:
                return

    async def cancel(self) -> None:
        CANCELLED.labels(self.job.queue, self.job.model).inc()
        self._supervisor.cancel(self.job.id, Reason.CLIENT_LEFT)

    def _timed_out(self, started: bool) -> GatewayError:
        return timed_out(self.job, started=started, unstarted="no slot became free for the job in time")
