"""Supervise the jobs a worker runs: drop the expired, cancel the abandoned and the overdue,
announce the slow, drain on exit. Running a job on its backend is dispatch.py's.

A job whose deadline passed while it waited is dropped unrun: its client has been answered
already. A job whose client went away is cancelled wherever it runs: the API publishes its id on
the cancel channel, and the worker cancels it, which closes its backend request (llama-server
frees the slot at its next token). One watchdog thread sweeps the running jobs a few dozen times a
second: it cancels those past their timeout, and those whose backend has made no progress (no
event) for the progress timeout, which it also reports so the backend is restarted (a hung
llama-server, a driver hang); and it sends ``started`` for those that have been silent for
``STARTED_NOTICE_S``, instead of a timer per job. When the worker shuts down,
running jobs get a grace period, then end with an error their clients can retry on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import redis
from redis.client import PubSub

from .cancellation import Cancellation, JobCancelled, Reason
from .dispatch import JobDispatcher
from .events import Event, EventType
from .jobs import Job
from .queue.event_sink import EventSink
from .queue.keys import CANCEL_CHANNEL, JobControl
from .results import StartedData

log = logging.getLogger(__name__)

#: A job that has said nothing this long after it started sends an explicit ``started`` event.
#: Any event means "started" to the API, so fast jobs spend no Redis write and no API wake-up on
#: it; the delay is far below the API's one-second grace after a job's deadline.
STARTED_NOTICE_S = 0.05
_SWEEP_S = STARTED_NOTICE_S / 2
#: How long a cancellation is remembered for a job this worker has not started (it may sit in
#: the worker's prefetch buffer); longer than any deadline a job could still start within.
_REMEMBER_CANCELLED_S = 3600.0
#: Threads a worker keeps beyond its generation slots for the jobs that hold none (tokenize,
#: embeddings, ...), so that they never wait behind long generations.
AUX_THREADS = 2


class Outcome(StrEnum):
    """How a job ended, as the worker saw it."""

    OK = "ok"
    #: The backend refused the request (a 4xx: too long a prompt, an unsupported option).
    INVALID = "invalid"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    #: Its backend made no progress for the progress timeout.
    STALLED = "stalled"
    #: Dropped unrun: its deadline passed while it waited.
    EXPIRED = "expired"


class JobObserver(Protocol):
    """Told of every job the supervisor takes; called on the job's own thread."""

    def job_started(self, job: Job, waited_s: float) -> None: ...

    def job_ended(self, job: Job, outcome: Outcome, ran_s: float | None, final: Event | None) -> None:
        """``ran_s`` is None for a job dropped unrun; ``final`` is its result or error event."""
        ...


@dataclass(eq=False)
class _Running:
    job: Job
    sink: EventSink
    worker_id: str
    cancellation: Cancellation = field(default_factory=Cancellation)
    started_at: float = field(default_factory=time.monotonic)
    #: When the job last sent an event (or started): the progress timeout counts from here.
    progressed_at: float = field(default_factory=time.monotonic)
    spoken: bool = False
    final: Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, *events: Event) -> None:
        if not self.spoken:
            with self.lock:
                self.spoken = True
        self.progressed_at = time.monotonic()
        if events and events[-1].type.is_final:
            self.final = events[-1]
        self.sink.emit(*events)

    def outcome(self) -> Outcome:
        # A cancellation that lands after the result changed nothing: the job succeeded.
        if self.final is not None and self.final.type is EventType.RESULT:
            return Outcome.OK
        reason = self.cancellation.reason
        if reason is Reason.TIMEOUT:
            return Outcome.TIMEOUT
        if reason is Reason.SHUTDOWN:
            return Outcome.SHUTDOWN
        if reason is Reason.STALLED:
            return Outcome.STALLED
        if reason is Reason.CLIENT_LEFT or reason is Reason.LOST or self.final is None:
            return Outcome.CANCELLED
        code = self.final.value().get("code")
        return Outcome.INVALID if isinstance(code, int) and code < 500 else Outcome.ERROR

    def announce(self) -> None:
        with self.lock:
            if self.spoken:
                return
            self.spoken = True
            started: StartedData = {"worker": self.worker_id, "started_at": time.time()}
            self.sink.emit(Event.of(EventType.STARTED, started))


class JobSupervisor:
    """Thread-safe: jobs run on threads of their own, cancellations arrive on another."""

    def __init__(
        self,
        dispatcher: JobDispatcher,
        observer: JobObserver | None = None,
        *,
        progress_timeout_s: float = 0.0,
        on_stalled: Callable[[Job], None] | None = None,
    ) -> None:
        """``progress_timeout_s`` (0: none) ends a job silent that long; ``on_stalled`` is then
        called (on the watchdog thread, at most once per progress timeout) to restart its backend."""
        self.dispatcher = dispatcher
        self._observer = observer
        self._progress_timeout_s = progress_timeout_s
        self._on_stalled = on_stalled
        self._stall_reported_at = float("-inf")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._running: dict[str, _Running] = {}
        self._cancelled: dict[str, float] = {}
        self._closed = False
        threading.Thread(target=self._watch, name="job-watchdog", daemon=True).start()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def busy_slots(self) -> int:
        """Running jobs that hold a generation slot, or an image pipeline."""
        with self._lock:
            kinds = [running.job.kind for running in self._running.values()]
        return sum(1 for kind in kinds if kind.holds_generation_slot or kind.is_image)

    def execute(self, job: Job, sink: EventSink) -> None:
        """Run ``job`` on the calling thread, reporting to ``sink``."""
        if job.expired():
            log.info("dropped job %s: its deadline passed %.1f s ago", job.id, time.time() - job.deadline)
            self._dropped(job, Outcome.EXPIRED)
            return
        running = _Running(job, sink, self.dispatcher.worker_id)
        with self._lock:
            if self._cancelled.pop(job.id, None) is not None:
                log.info("dropped job %s: cancelled before it started", job.id)
                self._dropped(job, Outcome.CANCELLED)
                return
            self._running[job.id] = running
            if len(self._running) == 1:
                self._changed.notify_all()
        if self._observer is not None:
            self._observer.job_started(job, time.time() - job.enqueued_at)
        try:
            self.dispatcher.run(job, running, running.cancellation)
        except JobCancelled as cancelled:
            log.info("cancelled job %s: %s", job.id, cancelled.reason.value)
        finally:
            with self._lock:
                del self._running[job.id]
                if not self._running:
                    self._changed.notify_all()
            if self._observer is not None:
                ran_s = time.monotonic() - running.started_at
                self._observer.job_ended(job, running.outcome(), ran_s, running.final)

    def _dropped(self, job: Job, outcome: Outcome) -> None:
        if self._observer is not None:
            self._observer.job_ended(job, outcome, None, None)

    def cancel(self, job_id: str, reason: Reason = Reason.CLIENT_LEFT) -> None:
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                if reason is Reason.INTERRUPTED:
                    return  # an interrupt is for a running job only, as in A1111
                now = time.time()
                self._cancelled[job_id] = now + _REMEMBER_CANCELLED_S
                if len(self._cancelled) > 10_000:
                    self._cancelled = {key: until for key, until in self._cancelled.items() if until > now}
                return
        running.cancellation.cancel(reason)

    def skip(self, job_id: str) -> None:
        """Ask a running job to give up its current image and go on with the next."""
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            running.cancellation.skip()

    def control(self, message: str) -> None:
        """Act on a message from the cancel channel (see queue/keys.py for its format)."""
        job_id, _, action = message.partition(" ")
        if action == JobControl.INTERRUPT:
            self.cancel(job_id, Reason.INTERRUPTED)
        elif action == JobControl.SKIP:
            self.skip(job_id)
        elif not action:
            self.cancel(job_id)
        else:
            log.warning("ignored an unknown job control %r", action)

    def drain(self, grace_s: float) -> None:
        """Give running jobs ``grace_s`` to finish, then end the rest as the worker shuts down."""
        with self._lock:
            self._changed.wait_for(lambda: not self._running, timeout=grace_s)
            remaining = list(self._running.values())
        for running in remaining:
            running.cancellation.cancel(Reason.SHUTDOWN)
        with self._lock:
            self._changed.wait_for(lambda: not self._running, timeout=5)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    def _watch(self) -> None:
        while True:
            with self._lock:
                self._changed.wait_for(lambda: self._running or self._closed)
                if self._closed:
                    return
                running = list(self._running.values())
            now = time.monotonic()
            for job in running:
                elapsed = now - job.started_at
                if elapsed >= job.job.timeout_s:
                    job.cancellation.cancel(Reason.TIMEOUT)
                elif self._progress_timeout_s and now - job.progressed_at >= self._progress_timeout_s:
                    self._stalled(job, now)
                elif elapsed >= STARTED_NOTICE_S and not job.spoken:
                    try:
                        job.announce()
                    except Exception:  # the job's own write will fail and report the same
                        log.warning("could not announce job %s", job.job.id, exc_info=True)
            # The sweep period bounds how late a notice or a timeout can be; it only runs while
            # jobs do, and the request path never waits on it.
            time.sleep(_SWEEP_S)

    def _stalled(self, running: _Running, now: float) -> None:
        if running.cancellation.reason is not None:
            return  # already ending
        log.error(
            "job %s made no progress for %g s (JOB_PROGRESS_TIMEOUT): its backend is taken for hung",
            running.job.id,
            self._progress_timeout_s,
        )
        running.cancellation.cancel(Reason.STALLED)
        # Every job on a hung backend stalls at once: one restart for them all.
        if self._on_stalled is not None and now - self._stall_reported_at >= self._progress_timeout_s:
            self._stall_reported_at = now
            try:
                self._on_stalled(running.job)
            except Exception:
                log.exception("could not restart the backend of stalled job %s", running.job.id)


def listen_for_cancellations(
    client: redis.Redis, supervisor: JobSupervisor, ready: threading.Event, stopping: threading.Event
) -> None:
    """Cancel jobs as the API announces them; runs on a thread of its own. Sets ``ready`` once
    subscribed, resubscribes after a lost connection, and ends once ``stopping`` is set."""
    while not stopping.is_set():
        try:
            pubsub: PubSub = client.pubsub(ignore_subscribe_messages=True)
            with pubsub:
                pubsub.subscribe(CANCEL_CHANNEL)
                ready.set()
                # Polled, not listen(): a blocking read would trip the client's socket timeout
                # whenever nobody cancels anything for a while.
                while _subscribed_to_master(client, pubsub):
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        supervisor.control(message["data"].decode())
        except Exception as error:
            if stopping.is_set():
                return  # the worker closed the connection as it stopped (redis-py may raise anything then)
            if not isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
                raise
            log.warning("lost the cancel channel (%s); subscribing again in 1 s", error)
            time.sleep(1)


def _subscribed_to_master(client: redis.Redis, pubsub: PubSub) -> bool:
    """Whether ``pubsub`` still listens on a connection of ``client``'s pool. A pool that no longer
    owns it has moved to a new Redis master (redis_clients): subscribe there."""
    connection = pubsub.connection
    return connection is not None and bool(client.connection_pool.owns_connection(connection))
