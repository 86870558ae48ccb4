"""Where a client's key is checked: before a job is queued, and again when it ends.

An HTTP request and a :class:`~velesio_core.client.Client` call go through the same two steps,
so a key's scopes, rates, quotas, concurrency and fair share apply to both alike:

1. :meth:`Admission.admit` before the job is queued: it refuses the job (raising the
   :class:`~velesio_core.errors.GatewayError` an HTTP client would get: 401, 403 or 429) or
   returns a :class:`Ticket`, whose ``job`` is what gets queued (stamped with its key, which the
   fair queue orders by);
2. :meth:`Ticket.finish` exactly once when the job ends, with its final event (its result, to
   charge the tokens it used), or None when it was cancelled or its caller left.

:class:`Unrestricted` admits everything, as an ``API_TOKENS`` token does over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..events import Event
from ..jobs import Job

__all__ = ["Admission", "Ticket", "Unrestricted"]


class Ticket(Protocol):
    """An admitted job: what to queue, and its release."""

    #: The job to queue: the one admitted, with whatever admission added to it.
    job: Job

    async def finish(self, final: Event | None) -> None:
        """Release the job's admission (its concurrency slot), charging what ``final`` used.
        Called once; ``final`` is None for a job that was cancelled."""
        ...


class Admission(Protocol):
    """Checks a job against the key a client was opened with."""

    async def admit(self, job: Job) -> Ticket:
        """Admit ``job`` or raise the GatewayError that refuses it."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Admitted:
    job: Job

    async def finish(self, final: Event | None) -> None:
        return None


class Unrestricted:
    """Admits every job, unchanged: a client trusted as much as an ``API_TOKENS`` token."""

    async def admit(self, job: Job) -> Ticket:
        return _Admitted(job)

    async def close(self) -> None:
        return None
