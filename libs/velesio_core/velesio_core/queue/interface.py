"""What the API needs from a job queue, whichever one runs the jobs.

Two implementations: :class:`~velesio_core.queue.redis_queue.RedisJobQueue` (Redis and Dramatiq,
workers anywhere) and :class:`~velesio_core.queue.local_queue.LocalJobQueue` (jobs run in this
process, for a worker serving its backend alone with no Redis).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Protocol

from ..errors import ErrorKind, GatewayError, unavailable
from ..events import Event
from ..jobs import Job

#: Seconds a client is told to wait before retrying when a queue is full or no worker took its job.
RETRY_AFTER_S = 1


class JobHandle(Protocol):
    job: Job
    #: How many jobs were to be served before this one when it was queued, where the queue
    #: tells (a streamed job on the Redis queue); else None.
    queue_position: int | None

    def events(self) -> AsyncIterator[Event]:
        """The job's events in order, ending with its result or error.

        Raises GatewayError when no worker starts the job before its deadline, when it runs past
        its timeout, or when the queue itself is unreachable.
        """
        ...

    def batches(self) -> AsyncGenerator[list[Event], None]:
        """The same events, in lists of those that arrived together (one read of the queue), so
        that a stream can send each list in one write."""
        ...

    async def cancel(self) -> None:
        """Stop the job, queued or running; its client is gone."""
        ...


class JobQueue(Protocol):
    async def submit(self, job: Job) -> JobHandle:
        """Queue a job. Raises GatewayError (unavailable, with a retry hint) when the queue is full."""
        ...

    async def close(self) -> None: ...


async def each_event(batches: AsyncGenerator[list[Event], None]) -> AsyncIterator[Event]:
    """A handle's ``events``, from its ``batches``."""
    async with aclosing(batches):
        async for batch in batches:
            for event in batch:
                yield event


def timed_out(job: Job, *, started: bool, unstarted: str) -> GatewayError:
    """A job that waited or ran too long: a 504 once a worker ran it, else a 503 to retry later
    (``unstarted`` says what it waited for)."""
    if started:
        return GatewayError(ErrorKind.TIMEOUT, f"the job did not finish within {job.timeout_s:g} s")
    return unavailable(f"{unstarted}; retry later", retry_after_s=RETRY_AFTER_S)
