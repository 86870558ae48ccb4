"""From a request's credential to who is calling: an API_TOKENS admin, or a stored key (and its parent).

Stored keys are looked up by the public id inside the secret and kept in a per-process cache for
at most :data:`CACHE_TTL_S`, so every API process sees a revocation, a rotation or a change
within that time without a Redis round trip per request. Jobs are stricter still: admission
re-reads the key's state in Redis atomically (see admission.py), so a revoked key queues nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..auth import TokenSet
from ..jobs import JobTenant
from .model import ApiKey
from .scopes import ALL_SCOPES, Scope
from .secrets import ServerSecret, key_id_of
from .store import KeyStore, StoredKey

CACHE_TTL_S = 1.0
#: Entries kept at most; past it the cache starts over (a flood of made-up ids cannot grow it).
CACHE_MAX = 10_000
#: The metrics label and audit actor of API_TOKENS.
ADMIN_TOKEN_NAME = "api-token"


@dataclass(frozen=True)
class Principal:
    """Who a request comes from. ``key`` is None for API_TOKENS, which may do everything."""

    key: ApiKey | None = None
    parent: ApiKey | None = None

    @property
    def is_admin(self) -> bool:
        return self.key is None or Scope.ADMIN in self.key.scopes

    @property
    def scopes(self) -> frozenset[Scope]:
        return ALL_SCOPES if self.is_admin else self.key.scopes  # type: ignore[union-attr]

    def allows(self, scope: Scope) -> bool:
        return self.key is None or self.key.allows(scope)

    def allows_model(self, model: str) -> bool:
        return self.key is None or self.key.allows_model(model)

    @property
    def chain(self) -> tuple[ApiKey, ...]:
        """The keys whose limits a request counts against: the key, then its parent."""
        if self.key is None:
            return ()
        return (self.key,) if self.parent is None else (self.key, self.parent)

    @property
    def label(self) -> str:
        """The metrics label: the key's name, a minted key's parent's (bounded cardinality)."""
        if self.key is None:
            return ADMIN_TOKEN_NAME
        return (self.parent or self.key).name

    @property
    def actor(self) -> str:
        """Who the audit trail says acted."""
        return ADMIN_TOKEN_NAME if self.key is None else f"key:{self.key.id}:{self.key.name}"

    def tenant(self) -> JobTenant | None:
        if self.key is None:
            return None
        top = self.parent or self.key
        return JobTenant(key_id=self.key.id, weight=self.key.weight, top_id=top.id, top_weight=top.weight)


ADMIN = Principal()


class Authenticator:
    def __init__(self, tokens: TokenSet, store: KeyStore | None, server_secret: ServerSecret | None) -> None:
        self._tokens = tokens
        self._store = store
        self._secret = server_secret
        self._cache: dict[str, tuple[float, StoredKey | None]] = {}

    async def authenticate(self, credential: str | None) -> Principal | None:
        """The caller, or None for a missing, unknown, revoked, disabled or expired credential."""
        if not credential:
            return None
        key_id = key_id_of(credential)
        if key_id is None or self._store is None or self._secret is None:
            return ADMIN if self._tokens.accepts(credential) else None
        now = time.time()
        stored = await self._cached(key_id, now)
        if stored is None or not stored.opened_by(credential, self._secret, now) or not _usable(stored.key, now):
            return None
        parent = None
        if stored.key.parent is not None:
            parent_stored = await self._cached(stored.key.parent, now)
            if parent_stored is None or not _usable(parent_stored.key, now):
                return None
            parent = parent_stored.key
        return Principal(stored.key, parent)

    async def _cached(self, key_id: str, now: float) -> StoredKey | None:
        hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        assert self._store is not None
        stored = await self._store.load(key_id)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key_id] = (now, stored)
        return stored


def _usable(key: ApiKey, now: float) -> bool:
    return not key.disabled and not key.expired(now)
