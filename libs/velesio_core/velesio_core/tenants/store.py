"""Keys in Redis: create, read, list, change, rotate and revoke them, each action audited.

One hash per key (see model.py for its fields, plus ``digest``, and ``old_digest`` with
``old_until`` while a rotation's grace lasts), a set indexing the top-level keys, and per parent a
sorted set of the keys it minted. A minted key's hash expires with it, so per-session keys leave
nothing behind. The admin API and ``velesio-keys`` share this class.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from . import audit
from .model import ApiKey, KeyPatch, KeySpec, check_within_parent
from .redis_keys import INDEX, KeyKeys, string, text
from .secrets import ServerSecret, new_key_id, new_secret

#: A minted key's hash outlives its expiry by this much, so that a request at the edge is
#: answered "expired" rather than "unknown"; both are 401.
_EXPIRED_KEPT_S = 60


@dataclass(frozen=True)
class StoredKey:
    """A key's record with the digests of the secrets that open it."""

    key: ApiKey
    digest: str
    old_digest: str | None
    old_until: float

    def opened_by(self, secret: str, server_secret: ServerSecret, now: float) -> bool:
        if server_secret.matches(secret, self.digest):
            return True
        return now < self.old_until and server_secret.matches(secret, self.old_digest)


class KeyStore:
    def __init__(self, redis: aioredis.Redis, server_secret: ServerSecret) -> None:
        self.redis = redis
        self._secret = server_secret

    async def load(self, key_id: str) -> StoredKey | None:
        fields = text(await self.redis.hgetall(KeyKeys(key_id).record))
        if not fields.get("digest"):
            return None
        return StoredKey(
            key=ApiKey.from_hash(key_id, fields),
            digest=fields["digest"],
            old_digest=fields.get("old_digest") or None,
            old_until=float(fields.get("old_until") or 0),
        )

    async def get(self, key_id: str) -> ApiKey | None:
        stored = await self.load(key_id)
        return stored.key if stored is not None else None

    async def create(
        self, spec: KeySpec, *, actor: str, parent: ApiKey | None = None, mint_max_ttl_s: float = 0
    ) -> tuple[ApiKey, str]:
        """Store a new key and return it with its secret, which is shown this once.

        With ``parent``, the key is minted: it must fit inside the parent (raises MintRefused).
        """
        now = time.time()
        models = tuple(spec.models) if spec.models is not None else None
        expires_at = now + spec.expires_in if spec.expires_in is not None else None
        if parent is not None:
            expires_at, models = check_within_parent(spec, parent, max_ttl_s=mint_max_ttl_s, now=now)
        key_id = new_key_id()
        key = ApiKey(
            id=key_id,
            name=spec.name,
            scopes=frozenset(spec.scopes),
            models=models,
            limits=spec.limits,
            weight=spec.weight,
            expires_at=expires_at,
            disabled=spec.disabled,
            parent=parent.id if parent is not None else None,
            created_at=now,
        )
        secret = new_secret(key_id)
        names = KeyKeys(key_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            record: Mapping[Any, Any] = key.to_hash() | {"digest": self._secret.digest(secret)}
            pipe.hset(names.record, mapping=record)
            if parent is not None:
                assert expires_at is not None
                pipe.expireat(names.record, int(expires_at) + _EXPIRED_KEPT_S)
                pipe.zadd(KeyKeys(parent.id).children, {key_id: expires_at})
            else:
                pipe.sadd(INDEX, key_id)
            await pipe.execute()
        await audit.record(self.redis, actor=actor, action="create", key_id=key_id, name=key.name,
                           changes={"parent": key.parent} if key.parent else None)  # fmt: skip
        return key, secret

    async def list(self, parent: str | None = None) -> list[ApiKey]:
        """The top-level keys, or the live keys ``parent`` minted."""
        if parent is None:
            ids = sorted(string(member) for member in await self.redis.smembers(INDEX))
        else:
            children = KeyKeys(parent).children
            await self.redis.zremrangebyscore(children, "-inf", time.time())
            ids = [string(member) for member in await self.redis.zrange(children, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(KeyKeys(key_id).record)
            rows = await pipe.execute()
        return [ApiKey.from_hash(key_id, text(row)) for key_id, row in zip(ids, rows, strict=True) if row]

    async def update(self, key_id: str, patch: KeyPatch, *, actor: str) -> ApiKey | None:
        key = await self.get(key_id)
        if key is None:
            return None
        changes = patch.model_dump(exclude_unset=True)
        values: dict[str, Any] = {name: value for name, value in changes.items() if name != "expires_in"}
        if "expires_in" in changes:
            values["expires_at"] = time.time() + changes["expires_in"] if changes["expires_in"] else None
        if "scopes" in values:
            values["scopes"] = frozenset(values["scopes"])
        if "models" in values and values["models"] is not None:
            values["models"] = tuple(values["models"])
        if "limits" in values:
            values["limits"] = patch.limits
        changed = key.model_copy(update=values)
        record: Mapping[Any, Any] = changed.to_hash()
        await self.redis.hset(KeyKeys(key_id).record, mapping=record)
        await audit.record(self.redis, actor=actor, action="update", key_id=key_id, name=changed.name,
                           changes=changes)  # fmt: skip
        return changed

    async def rotate(self, key_id: str, *, grace_s: float, actor: str) -> str | None:
        """A new secret for the key; the old one keeps working for ``grace_s`` seconds."""
        stored = await self.load(key_id)
        if stored is None:
            return None
        secret = new_secret(key_id)
        await self.redis.hset(
            KeyKeys(key_id).record,
            mapping={
                "digest": self._secret.digest(secret),
                "old_digest": stored.digest if grace_s > 0 else "",
                "old_until": repr(time.time() + grace_s) if grace_s > 0 else "0",
            },
        )
        await audit.record(self.redis, actor=actor, action="rotate", key_id=key_id, name=stored.key.name,
                           changes={"grace_s": grace_s})  # fmt: skip
        return secret

    async def delete(self, key_id: str, *, actor: str) -> ApiKey | None:
        """Revoke a key and every key it minted."""
        key = await self.get(key_id)
        if key is None:
            return None
        children = [string(member) for member in await self.redis.zrange(KeyKeys(key_id).children, 0, -1)]
        async with self.redis.pipeline(transaction=True) as pipe:
            for doomed in (key_id, *children):
                pipe.delete(*KeyKeys(doomed).all())
            pipe.srem(INDEX, key_id)
            if key.parent:
                pipe.zrem(KeyKeys(key.parent).children, key_id)
            await pipe.execute()
        await audit.record(self.redis, actor=actor, action="revoke", key_id=key_id, name=key.name,
                           changes={"minted_keys_revoked": len(children)} if children else None)  # fmt: skip
        return key

    async def usage(self, key_id: str, *, window_s: float = 60.0) -> dict[str, int]:
        """What the key uses now: requests and tokens in the last minute, jobs in flight, today's totals."""
        names = KeyKeys(key_id)
        now = time.time()
        day = int(now // 86400)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(names.requests, f"({(now - window_s) * 1000}", "+inf")
            pipe.zcount(names.leases, f"({now * 1000}", "+inf")
            pipe.hgetall(names.tokens)
            pipe.hmget(names.daily, "day", "tokens", "images")
            requests, leases, buckets, daily = await pipe.execute()
        horizon = int((now - window_s) // 1)
        tokens = sum(int(value) for second, value in buckets.items() if int(second) > horizon)
        today = daily[0] is not None and int(daily[0]) == day
        return {
            "requests_last_minute": int(requests),
            "in_flight": int(leases),
            "tokens_last_minute": tokens,
            "tokens_today": int(daily[1]) if today else 0,
            "images_today": int(daily[2]) if today else 0,
        }
