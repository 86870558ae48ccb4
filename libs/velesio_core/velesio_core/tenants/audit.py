"""The audit trail of admin actions: who created, changed, rotated or revoked which key, and when.

Each action is one entry of a capped Redis stream (``velesio-keys audit`` and ``GET /admin/audit``
read it back) and one log line. Neither ever holds a secret: only ids, names and the fields changed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from .redis_keys import AUDIT_MAX_LEN, AUDIT_STREAM, text

log = logging.getLogger("velesio.audit")


async def record(
    redis: aioredis.Redis, *, actor: str, action: str, key_id: str, name: str, changes: dict[str, Any] | None = None
) -> None:
    entry: dict[Any, Any] = {
        "at": repr(time.time()),
        "actor": actor,
        "action": action,
        "key": key_id,
        "name": name,
        "changes": orjson.dumps(changes or {}).decode(),
    }
    await redis.xadd(AUDIT_STREAM, entry, maxlen=AUDIT_MAX_LEN, approximate=True)
    log.info("key %s: %s %s (%s) %s", action, key_id, name, actor, changes or {})


async def recent(redis: aioredis.Redis, count: int = 100) -> list[dict[str, Any]]:
    """The newest ``count`` entries, newest first."""
    entries: Any = await redis.xrevrange(AUDIT_STREAM, count=count)
    answer = []
    for entry_id, fields in entries:
        item: dict[str, Any] = text(fields)
        item["id"] = entry_id.decode()
        item["at"] = float(item["at"])
        item["changes"] = orjson.loads(item["changes"])
        answer.append(item)
    return answer
