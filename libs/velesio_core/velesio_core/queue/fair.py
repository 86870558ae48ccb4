"""The fair queue's commands (fairq.lua), for the API, the worker's broker and the readers.

Every queue serves its waiting jobs fairly between API keys, weighted by each key's ``weight``:
between top-level keys first, then between the keys one of them minted. A key's new jobs wait in
a lane of their own; a fetch takes first what went back on Dramatiq's list (the *ready* list),
then the next job of the lane whose turn it is. docs/decisions.md ("Fair queue") has the design
and its measured cost.

One class serves a sync client (the worker, tests) and an asyncio one (the API): each command
returns what the client's script call returns, a value or an awaitable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..jobs import JobTenant
from .keys import WAKE_TOKENS_MAX, QueueKeys, lua_script

#: The lane of every job queued with an ``API_TOKENS`` token (no key): one lane of its own,
#: weight 1, under no per-key cap. Key ids are hex, so no key's lane can be named so.
API_TOKENS_LANE = "api_tokens"


@dataclass(frozen=True)
class Lane:
    """Where a job waits: its key's lane, under its top-level key."""

    name: str
    weight: int
    top: str
    top_weight: int

    @property
    def capped(self) -> bool:
        """Whether the per-key cap (KEY_QUEUE_CAP) applies: to every key, not to API_TOKENS."""
        return self.name != API_TOKENS_LANE


def lane_of(tenant: JobTenant | None) -> Lane:
    if tenant is None:
        return Lane(API_TOKENS_LANE, 1, API_TOKENS_LANE, 1)
    return Lane(tenant.key_id, tenant.weight, tenant.top_id, tenant.top_weight)


#: enqueue's first reply when the queue held QUEUE_CAP jobs, or the key's lane KEY_QUEUE_CAP.
QUEUE_FULL, LANE_FULL = 0, -1


class FairQueue:
    def __init__(self, client: Any) -> None:
        self._script = client.register_script(lua_script("fairq"))

    def enqueue(
        self,
        keys: QueueKeys,
        message_id: str,
        message: bytes,
        lane: Lane,
        *,
        queue_cap: int = 0,
        lane_cap: int = 0,
        stream: str | None = None,
        stream_ttl_s: int = 0,
        position: bool = False,
    ) -> Any:
        """Queue a message in its lane. Replies ``[1, the stream's first entry id (or 1), the
        job's position (or -1)]``, or ``[QUEUE_FULL]`` / ``[LANE_FULL]``. A cap of 0 is none."""
        script_keys, args = self.enqueue_command(
            keys, message_id, message, lane, queue_cap=queue_cap, lane_cap=lane_cap, stream=stream,
            stream_ttl_s=stream_ttl_s, position=position,
        )  # fmt: skip
        return self._script(keys=script_keys, args=args)

    @property
    def sha(self) -> str:
        """The script's SHA1, for an EVALSHA sent by hand (redis_queue.py's first read)."""
        sha: str = self._script.sha
        return sha

    def enqueue_command(
        self,
        keys: QueueKeys,
        message_id: str,
        message: bytes,
        lane: Lane,
        *,
        queue_cap: int = 0,
        lane_cap: int = 0,
        stream: str | None = None,
        stream_ttl_s: int = 0,
        position: bool = False,
        first_entry_id: str = "*",
    ) -> tuple[list[str], list[Any]]:
        """enqueue's keys and arguments, ``first_entry_id`` the id of the stream's first entry."""
        return (
            [keys.ready_list] + ([stream] if stream else []),
            [
                "enqueue",
                message_id,
                message,
                queue_cap,
                lane_cap if lane.capped else 0,
                WAKE_TOKENS_MAX,
                lane.name,
                lane.weight,
                lane.top,
                lane.top_weight,
                stream_ttl_s,
                "1" if position else "0",
                first_entry_id,
            ],
        )

    def fetch(self, keys: QueueKeys, room: int, *, broker_id: str, now_ms: int) -> Any:
        """Up to ``room`` messages, moved into the broker's unacked set as Dramatiq's fetch does
        (a broker's heartbeat included)."""
        return self._script(
            keys=[keys.ready_list, keys.unacked_set(broker_id), f"{keys.namespace}:__heartbeats__"],
            args=["fetch", room, broker_id, now_ms],
        )

    def cancel(self, keys: QueueKeys, message_id: str, *, channel: str, job_id: str) -> Any:
        """Take a message off the queue if it still waits (1, else 0) and publish ``job_id`` on
        ``channel``."""
        return self._script(keys=[keys.ready_list], args=["cancel", message_id, channel, job_id])

    def order(self, keys: QueueKeys, limit: int = -1) -> Any:
        """The waiting message ids (bytes) in the order they would be fetched, at most ``limit``
        (-1: all)."""
        return self._script(keys=[keys.ready_list], args=["order", limit])

    def position(self, keys: QueueKeys, message_id: str) -> Any:
        """How many waiting messages would be fetched before this one; -1 when it does not wait."""
        return self._script(keys=[keys.ready_list], args=["position", message_id])

    def stats(self, keys: QueueKeys) -> Any:
        """``[waiting messages, [the id of the oldest message of the ready list and of each lane]]``."""
        return self._script(keys=[keys.ready_list], args=["stats"])
