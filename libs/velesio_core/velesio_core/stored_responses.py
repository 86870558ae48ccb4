"""Responses kept for ``previous_response_id`` and ``GET /v1/responses/{id}``: bounded, and each
readable only with the credential that made it.

A stored record is the response object and the chat messages of its conversation (what a
later turn that continues it is sent). Records live :data:`TTL_S` seconds after they were
written (OpenAI keeps them 30 days; a self-hosted gateway has no business holding prompts that
long) and records over :data:`MAX_RECORD_BYTES` are not kept at all, so the store is bounded in
time and size. The owner is a SHA-256 digest of the credential, never the credential; another
credential's request for a response is answered as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from .queue.keys import response_key

TTL_S = 24 * 3600
MAX_RECORD_BYTES = 4 * 1024 * 1024


def owner_of(credential: str | None) -> str:
    return hashlib.sha256((credential or "").encode("utf-8", "surrogatepass")).hexdigest()


class ResponseStore(Protocol):
    async def put(self, owner: str, response_id: str, record: dict[str, Any]) -> bool:
        """Keep ``record``; False when it is too large to keep."""
        ...

    async def get(self, owner: str, response_id: str) -> dict[str, Any] | None: ...

    async def delete(self, owner: str, response_id: str) -> bool: ...


def _encode(owner: str, record: dict[str, Any]) -> bytes | None:
    data = orjson.dumps({"owner": owner, "record": record})
    return data if len(data) <= MAX_RECORD_BYTES else None


def _decode(owner: str, data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    stored = orjson.loads(data)
    return stored["record"] if hmac.compare_digest(stored["owner"], owner) else None


class RedisResponseStore:
    def __init__(self, client: aioredis.Redis) -> None:  # a client that answers bytes (not decoded)
        self._redis = client

    async def put(self, owner: str, response_id: str, record: dict[str, Any]) -> bool:
        data = _encode(owner, record)
        if data is None:
            return False
        await self._redis.set(response_key(response_id), data, ex=TTL_S)
        return True

    async def get(self, owner: str, response_id: str) -> dict[str, Any] | None:
        data = await self._redis.get(response_key(response_id))
        return _decode(owner, data.encode() if isinstance(data, str) else data)

    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:
            return False
        return bool(await self._redis.delete(response_key(response_id)))


class MemoryResponseStore:
    """The store of a gateway without Redis (the standalone worker): at most ``capacity`` records,
    the oldest dropped first."""

    def __init__(self, capacity: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self._records: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._capacity = capacity
        self._clock = clock

    async def put(self, owner: str, response_id: str, record: dict[str, Any]) -> bool:
        data = _encode(owner, record)
        if data is None:
            return False
        self._records[response_id] = (self._clock() + TTL_S, data)
        self._records.move_to_end(response_id)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)
        return True

    async def get(self, owner: str, response_id: str) -> dict[str, Any] | None:
        expires, data = self._records.get(response_id, (0.0, None))
        if data is not None and expires < self._clock():
            del self._records[response_id]
            data = None
        return _decode(owner, data)

    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:
            return False
        del self._records[response_id]
        return True
