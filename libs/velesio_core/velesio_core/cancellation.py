"""Stop a running job from another thread, at once, even while it blocks on I/O.

A job checks its :class:`Cancellation` between steps, and whatever blocks (a socket read from
llama-server, a diffusion step) registers a callback that unblocks it: closing the socket makes
the read return at once, and llama-server sees the connection close at its next token.

Two gentler requests come from AUTOMATIC1111's API, for image jobs: *interrupt* (stop now, but
answer with what is done, as A1111 does) and *skip* (give up the image being made, go on with
the next one of the batch). A job that does not know them treats an interrupt as a cancellation
and ignores a skip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

from .errors import ErrorKind, GatewayError


class Reason(Enum):
    CLIENT_LEFT = "the client went away"
    TIMEOUT = "the job ran out of time"
    SHUTDOWN = "the worker is shutting down"
    INTERRUPTED = "the job was interrupted"
    #: The backend made no progress for JOB_PROGRESS_TIMEOUT (hung): it is being restarted.
    STALLED = "the backend stopped making progress"
    #: The worker was reaped as dead (queue/reaper.py) and the job is no longer its own.
    LOST = "the job was handed to another worker"


class JobCancelled(Exception):
    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Cancellation:
    """Thread-safe. ``cancel`` wins once; later calls change nothing."""

    __slots__ = ("_callbacks", "_lock", "_skips", "reason")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._skips = 0
        self.reason: Reason | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: Reason) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def skip(self) -> None:
        """Ask the job to give up its current item (an image of a batch) and go on."""
        with self._lock:
            self._skips += 1

    def take_skip(self) -> bool:
        """Whether a skip was asked since the last call; each request is taken once."""
        with self._lock:
            if self._skips == 0:
                return False
            self._skips -= 1
            return True

    def check(self) -> None:
        """Raise JobCancelled if the job was cancelled."""
        if self.reason is not None:
            raise JobCancelled(self.reason)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on cancellation (at once if already cancelled). Returns an unregister."""
        with self._lock:
            if self.reason is None:
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


@contextmanager
def cancel_after(seconds: float) -> Iterator[Cancellation]:
    """A cancellation that fires by itself after ``seconds``, for a call that belongs to no job
    (a health check) but must not hang."""
    cancellation = Cancellation()
    timer = threading.Timer(seconds, cancellation.cancel, args=(Reason.TIMEOUT,))
    timer.daemon = True
    timer.start()
    try:
        yield cancellation
    finally:
        timer.cancel()


def error_for(reason: Reason, *, timeout_s: float) -> GatewayError | None:
    """What to tell the client of a job cancelled for ``reason``; None when nobody is listening."""
    if reason is Reason.TIMEOUT:
        return GatewayError(ErrorKind.TIMEOUT, f"the job did not finish within {timeout_s:g} s")
    if reason is Reason.SHUTDOWN:
        return GatewayError(ErrorKind.UNAVAILABLE, "the worker is shutting down; retry", retry_after_s=1)
    if reason is Reason.INTERRUPTED:
        return GatewayError(ErrorKind.CONFLICT, "the job was interrupted")
    if reason is Reason.STALLED:
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            "the backend made no progress within JOB_PROGRESS_TIMEOUT; it is being restarted, retry",
            retry_after_s=2,
        )
    return None
