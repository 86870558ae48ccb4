"""The exceptions a :class:`~velesio_core.client.Client` raises, one per thing a caller can act on.

Every one of them is a :class:`VelesioError` and carries what an HTTP client of velesio would
have seen: the HTTP ``status``, the ``kind`` of error, a ``message`` safe to show, and, where
waiting helps, ``retry_after`` in seconds. They are mapped from the
:class:`~velesio_core.errors.GatewayError` that velesio raises everywhere, so an HTTP client and
a Python client are refused for the same reasons.
"""

from __future__ import annotations

import time

from ..errors import ErrorKind, GatewayError, QueueFullError
from ..jobs import Job

__all__ = [
    "BackendError",
    "InvalidRequest",
    "ModelNotFound",
    "NotSupported",
    "QueueFull",
    "QuotaExceeded",
    "RateLimited",
    "ScopeDenied",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "VelesioError",
]


class VelesioError(Exception):
    """Any error velesio answers a job with."""

    def __init__(self, message: str, *, kind: ErrorKind, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The error's category, which decides its HTTP status.
        self.kind = kind
        #: Seconds to wait before trying again, when waiting can help; else None.
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        """The HTTP status an HTTP client would have been answered with."""
        return self.kind.status


class QueueFull(VelesioError):
    """The model's queue holds as many waiting jobs as QUEUE_CAP allows; retry after ``retry_after``."""


class RateLimited(VelesioError):
    """The key reached a rate or concurrency limit; ``retry_after`` says when it frees up."""


class QuotaExceeded(VelesioError):
    """The key spent its daily quota of tokens or images; ``retry_after`` is the time to the reset."""


class ScopeDenied(VelesioError):
    """The key's scopes (or its model allowlist) do not cover this kind of job."""


class Unauthenticated(VelesioError):
    """The key is unknown, revoked, disabled or expired."""


class Timeout(VelesioError):
    """No worker started the job before its deadline, or it ran past its timeout."""


class InvalidRequest(VelesioError):
    """The request itself is wrong (a bad option, a prompt longer than the context); do not retry it."""


class ModelNotFound(VelesioError):
    """No worker serves the model the request names."""


class NotSupported(VelesioError):
    """The model's backend cannot run this kind of job (an HTTP client gets a 501)."""


class Unavailable(VelesioError):
    """No worker serves anything yet, or Redis is unreachable; retry after ``retry_after``."""


class BackendError(VelesioError):
    """The worker or its backend failed while running the job."""


def from_gateway_error(error: GatewayError, job: Job | None = None) -> VelesioError:
    """The public exception for ``error``; ``job`` tells a queue that no worker reached in time
    from an unreachable Redis (both are 503s on the HTTP side)."""
    kind, retry = error.kind, error.retry_after_s
    status, type_name = kind.status, kind.type_name
    cls: type[VelesioError]
    if isinstance(error, QueueFullError):
        cls = QueueFull
    elif status == 401:
        cls = Unauthenticated
    elif status == 403:
        cls = ScopeDenied
    elif status == 429:
        # OpenAI's name for a spent quota, which velesio's keys use too.
        cls = QuotaExceeded if type_name == "insufficient_quota" else RateLimited
    elif kind is ErrorKind.TIMEOUT or (
        kind is ErrorKind.UNAVAILABLE and job is not None and time.time() > job.deadline
    ):
        cls = Timeout
    elif kind is ErrorKind.NOT_FOUND:
        cls = ModelNotFound
    elif kind is ErrorKind.NOT_SUPPORTED:
        cls = NotSupported
    elif kind is ErrorKind.UNAVAILABLE:
        cls = Unavailable
    elif status < 500:
        cls = InvalidRequest
    else:
        cls = BackendError
    return cls(error.message, kind=kind, retry_after=float(retry) if retry is not None else None)
