"""A client that acts for a velesio API key: its scopes, rates, quotas, concurrency and fair share
apply exactly as over HTTP, because both paths call the same code (velesio_core.tenants): the key
is authenticated as the API authenticates it, and each job is admitted and released by the same
Redis scripts, so an HTTP client and a Python client of one key share its limits."""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from ..auth import TokenSet
from ..errors import ErrorKind, GatewayError
from ..jobs import Job
from ..tenants.admission import Admission as KeyLimits
from ..tenants.authn import Authenticator
from ..tenants.secrets import ServerSecret
from ..tenants.store import KeyStore
from .admission import Ticket

__all__ = ["KeyAdmission"]


class KeyAdmission:
    """Admits each job against the key ``credential`` (a stored key's secret, or an API_TOKENS
    token, which is admitted without limits as over HTTP). ``server_secret`` is the API's
    KEY_SECRET, ``lease_ttl_s`` its KEY_LEASE_TTL."""

    def __init__(
        self,
        redis: aioredis.Redis,
        credential: str,
        *,
        server_secret: ServerSecret | None,
        lease_ttl_s: float = 30.0,
        api_tokens: Iterable[str] = (),
    ) -> None:
        store = KeyStore(redis, server_secret) if server_secret is not None else None
        self._authenticator = Authenticator(TokenSet(api_tokens), store, server_secret)
        self._limits = KeyLimits(redis, lease_ttl_s=lease_ttl_s)
        self._credential = credential

    async def admit(self, job: Job) -> Ticket:
        # Per job, as per request over HTTP: a revoked or changed key is seen within a second.
        principal = await self._authenticator.authenticate(self._credential)
        if principal is None:
            raise GatewayError(ErrorKind.AUTHENTICATION, "Invalid API Key")
        lease = await self._limits.admit(principal, job)
        tenant = principal.tenant()
        if tenant is not None:
            # Stamped with its key, as the API stamps it, for the queue's fair share.
            lease.job = job.model_copy(update={"tenant": tenant})
        return lease

    async def close(self) -> None:
        await self._limits.close()
