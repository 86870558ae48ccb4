"""Where a running job writes its events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis import Redis
from redis.commands.core import Script
from redis.connection import Connection
from redis.typing import EncodableT

from ..cancellation import JobCancelled, Reason
from ..events import Event
from ..jobs import Job
from .keys import DRAMATIQ_NAMESPACE, QueueKeys, events_key, lua_script

#: Slack on a job stream's TTL beyond the job's wait and run, set when the API opens the stream.
FINISHED_EVENTS_TTL_S = 60
#: How long a finished stream lives. Its reader is blocked on it already and gets the final event
#: the moment it is written; the TTL only bounds the memory of streams nobody reads any more.
FINISHED_STREAM_TTL_S = 10


class EventSink(Protocol):
    """Called from the job's own thread."""

    def emit(self, *events: Event) -> None:
        """Send ``events``, in order, in one write where the sink can; a final event comes last."""
        ...


@dataclass(frozen=True)
class MessageAck:
    """Where a worker acknowledges the Dramatiq message that carried a job."""

    unacked_set: str
    messages_hash: str
    message_id: str


class RedisEventSink:
    """Appends a job's events to the Redis Stream the API opened for it.

    The final event also acknowledges the job's Dramatiq message, atomically (see finish.lua),
    and calls ``on_acked`` so that Dramatiq's own ack need not go to Redis again. With an ack,
    every event is written only while the worker still holds the message (emit.lua): one that
    was reaped as dead gets :class:`JobCancelled` (Reason.LOST) instead, and stops the job.

    The events of one ``emit`` go in one write: one emit.lua call, one fence check, however many
    tokens the backend had read at once. The first write is answered before the job goes on (it
    also loads emit.lua into a Redis that lacks it). The writes after it are pipelined on a
    connection of the job's own: each is sent without waiting for Redis's answer, and the
    answers are read as they arrive, all of them before the final event, so a token never waits
    for the one before it to round-trip, and a lost job is still stopped, at most a few writes
    later. Use it as a context manager:
    leaving gives the connection back.
    """

    def __init__(
        self,
        redis: Redis,
        finish: Script,
        job_id: str,
        fenced_emit: Script | None = None,
        *,
        ack: MessageAck | None = None,
        on_acked: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = redis
        self._finish = finish
        self._key = events_key(job_id)
        self._ack = ack
        self._on_acked = on_acked
        self._fenced_emit = fenced_emit
        self._pipelined: Connection | None = None
        self._unanswered = 0

    def __enter__(self) -> RedisEventSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._give_back()

    def emit(self, *events: Event) -> None:
        if events and events[-1].type.is_final:
            *events_before, final = events
            if events_before:
                self._append(events_before)
            self._finish_with(final)
        elif events:
            self._append(events)

    def _append(self, events: Sequence[Event]) -> None:
        """Write non-final events, fenced by emit.lua when there is a message to hold."""
        if self._ack is None or self._fenced_emit is None:
            if len(events) == 1:
                self._redis.xadd(self._key, {"t": events[0].type.value, "d": events[0].data})
                return
            pipeline = self._redis.pipeline(transaction=False)
            for event in events:
                pipeline.xadd(self._key, {"t": event.type.value, "d": event.data})
            pipeline.execute()
            return
        keys = [self._key, self._ack.unacked_set]
        args: list[EncodableT] = [self._ack.message_id]
        for event in events:
            args += (event.type.value, event.data)
        if self._pipelined is None:
            if not self._fenced_emit(keys=keys, args=args):
                raise JobCancelled(Reason.LOST)
            self._pipelined = self._redis.connection_pool.get_connection()
            return
        self._read_answers(wait=False)
        self._pipelined.send_command("EVALSHA", self._fenced_emit.sha, 2, *keys, *args)
        self._unanswered += 1

    def _finish_with(self, event: Event) -> None:
        self._read_answers(wait=True)
        keys = [self._key]
        args: list[EncodableT] = [event.type.value, event.data, FINISHED_STREAM_TTL_S]
        if self._ack is not None:
            keys += [self._ack.unacked_set, self._ack.messages_hash]
            args.append(self._ack.message_id)
        if not self._finish(keys=keys, args=args):
            raise JobCancelled(Reason.LOST)
        if self._ack is not None and self._on_acked is not None:
            self._on_acked(self._ack.message_id)

    def _read_answers(self, *, wait: bool) -> None:
        """Read emit.lua's answers to the pipelined events: those already here, or (``wait``) all."""
        connection = self._pipelined
        lost = False
        try:
            while self._unanswered and connection is not None and (wait or connection.can_read()):
                answer = connection.read_response()
                self._unanswered -= 1
                lost = lost or not answer
        except BaseException:
            self._give_back()
            raise
        if lost:
            self._give_back()
            raise JobCancelled(Reason.LOST)

    def _give_back(self) -> None:
        connection, self._pipelined = self._pipelined, None
        if connection is None:
            return
        if self._unanswered:
            # Answers still on their way would be read by the connection's next user.
            connection.disconnect()
            self._unanswered = 0
        self._redis.connection_pool.release(connection)


class RedisEventSinks:
    """Makes the event sinks of a worker's jobs.

    With ``broker_id`` (the worker's Dramatiq broker), each job's final event acknowledges the
    job's message from that broker's unacked set.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        broker_id: str | None = None,
        namespace: str = DRAMATIQ_NAMESPACE,
        on_acked: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = redis
        self._finish = redis.register_script(lua_script("finish"))
        self._fenced_emit = redis.register_script(lua_script("emit"))
        self._broker_id = broker_id
        self._namespace = namespace
        self._on_acked = on_acked

    def for_job(self, job: Job) -> RedisEventSink:
        ack = None
        if self._broker_id is not None:
            keys = QueueKeys(job.queue, self._namespace)
            ack = MessageAck(keys.unacked_set(self._broker_id), keys.messages_hash, job.id)
        return RedisEventSink(self._redis, self._finish, job.id, self._fenced_emit, ack=ack, on_acked=self._on_acked)


class LoopEventSink:
    """Hands a job's events from its thread to a reader on an asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def emit(self, *events: Event) -> None:
        self._loop.call_soon_threadsafe(self._put, events)

    def _put(self, events: tuple[Event, ...]) -> None:
        for event in events:
            self.queue.put_nowait(event)
