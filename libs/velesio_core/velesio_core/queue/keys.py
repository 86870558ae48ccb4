"""Every Redis key velesio uses, named in one place.

Dramatiq's own keys (queues, message hashes, acks, heartbeats) live under its namespace,
``dramatiq`` by default; velesio's live under ``velesio``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

DRAMATIQ_NAMESPACE = "dramatiq"

#: Job ids are published here when their client goes away, as ``<job id>``; an operator's
#: request for a running image job as ``<job id> <JobControl>``.
CANCEL_CHANNEL = "velesio:cancel"


class JobControl(StrEnum):
    """What AUTOMATIC1111's /interrupt and /skip ask of the running image job."""

    INTERRUPT = "interrupt"
    SKIP = "skip"


#: The image jobs running now: a sorted set of job id -> the time by which it must have ended
#: (its start plus its timeout), so that a worker that died mid-job leaves no ghost behind.
SD_RUNNING_KEY = "velesio:sd:running"
#: AUTOMATIC1111's options that velesio keeps (sd_model_checkpoint, sd_vae): a hash, shared by
#: every API process and read by each image request.
SD_OPTIONS_KEY = "velesio:sd:options"
#: Hash of worker id -> the worker's card (models, queues, heartbeat), see registry.py.
WORKERS_KEY = "velesio:workers"

#: Sorted set of worker id -> when it last said it was alive (Redis's clock, in ms): a worker
#: silent for longer than reaper.DEAD_AFTER_S is reaped (reaper.py).
BEATS_KEY = "velesio:beats"

#: Wake tokens kept when no consumer is idle: enough to wake every idle consumer of a busy
#: deployment, few enough that an unconsumed pile stays tiny.
WAKE_TOKENS_MAX = 64


def task_key(name: str) -> str:
    """Which job an AUTOMATIC1111 client's ``force_task_id`` names, for the token that sent it
    (``name`` is their digest, see routes/a1111.py); it expires with the job."""
    return f"velesio:task:{name}"


def response_key(response_id: str) -> str:
    """A stored Responses API response (see stored_responses.py)."""
    return f"velesio:response:{response_id}"


def events_key(job_id: str) -> str:
    """The Redis Stream a job's events are written to."""
    return f"velesio:job:{job_id}:events"


def operator_cancel_key(job_id: str) -> str:
    """Set, with a TTL, when an operator cancels a job (the console's DELETE /admin/jobs/{id}):
    every API process then reads the job as ended by that cancel, however many events its worker
    writes before it stops."""
    return f"velesio:job:{job_id}:cancelled"


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one Dramatiq queue: Dramatiq's Redis broker's, and the fair queue's lanes
    beside them (fairq.lua describes the layout)."""

    queue: str
    namespace: str = DRAMATIQ_NAMESPACE

    @property
    def ready_list(self) -> str:
        """Dramatiq's list of message ids: here, the jobs that went back on the queue, fetched
        before any lane's."""
        return f"{self.namespace}:{self.queue}"

    def lane(self, name: str) -> str:
        """One key's new jobs, oldest first."""
        return f"{self.namespace}:{self.queue}.lane.{name}"

    @property
    def messages_hash(self) -> str:
        return f"{self.namespace}:{self.queue}.msgs"

    @property
    def wake_list(self) -> str:
        return f"{self.namespace}:{self.queue}.wake"

    def unacked_set(self, broker_id: str) -> str:
        """The messages a worker (one Dramatiq broker) fetched and has not acknowledged yet."""
        return f"{self.namespace}:__acks__.{broker_id}.{self.queue}"


_INCLUDE = re.compile(rb"^-- #include (\w+)$", re.MULTILINE)


@functools.cache
def lua_script(name: str) -> bytes:
    """A script of this package, with each ``-- #include name`` line replaced by that file (Redis
    runs one self-contained script; the scripts share their Lua this way)."""
    source = resources.files(__package__).joinpath(f"{name}.lua").read_bytes()
    return _INCLUDE.sub(lambda include: lua_script(include.group(1).decode()), source)
