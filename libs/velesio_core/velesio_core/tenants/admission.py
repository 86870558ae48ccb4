"""Enforcement before anything is queued: scopes, models, rates, quotas and concurrency leases.

One Lua script (admit.lua) checks every limit of a key and of its parent and records the request
atomically, on Redis's clock, so any number of API processes on any number of hosts share the
limits exactly. Concurrency is a lease, never a counter: a sorted set of lease ids scored by
expiry. The API process that holds a lease renews it while the job runs and releases it on finish,
error, cancel or disconnect; when the process dies, renewals stop and the next admission reclaims
the lease once it expires (KEY_LEASE_TTL), so a slot can never leak. Tokens are charged with the
job's real usage when its result arrives (release.lua); images are reserved at admission from the
count asked for, and given back if the job fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import ErrorKind, GatewayError
from ..events import Event, EventType
from ..jobs import IMAGE_MODEL, Job, JobKind
from ..metrics.api import KEY_IMAGES, KEY_JOBS_IN_FLIGHT, KEY_REQUESTS, KEY_TOKENS
from ..queue.redis_queue import queue_error
from .authn import Principal
from .headers import RateSnapshot, duration
from .model import ApiKey
from .redis_keys import KeyKeys
from .scopes import scope_of_job

log = logging.getLogger(__name__)

WINDOW_S = 60.0
_TOKEN_KINDS = frozenset({JobKind.COMPLETION, JobKind.CHAT, JobKind.EMBEDDINGS})


def _script(name: str) -> bytes:
    return resources.files(__package__).joinpath(f"{name}.lua").read_bytes()


def images_asked(job: Job) -> int:
    """How many images a job will make (A1111's batch_size times n_iter)."""
    if not job.kind.makes_images:
        return 0
    payload = job.payload
    return max(int(payload.get("batch_size") or 1), 1) * max(int(payload.get("n_iter") or 1), 1)


def tokens_used(job: Job, result: Any) -> int:
    """The tokens a finished job used, from its result (see events.py for the vocabulary)."""
    if job.kind not in _TOKEN_KINDS or not isinstance(result, dict):
        return 0
    if job.kind is JobKind.EMBEDDINGS:
        return int(result.get("prompt_tokens") or 0)
    return int(result.get("tokens_evaluated") or 0) + int(result.get("tokens_predicted") or 0)


def check_scope_and_model(principal: Principal, job: Job) -> None:
    scope = scope_of_job(job.kind)
    if not principal.allows(scope):
        raise GatewayError(ErrorKind.PERMISSION, f"this API key's scopes do not include {scope.value!r}")
    if job.model != IMAGE_MODEL and not principal.allows_model(job.model):
        raise GatewayError(ErrorKind.PERMISSION, f"this API key may not use the model {job.model!r}")


@dataclass
class Lease:
    """A job's admission: its concurrency slot (when its keys limit concurrency) and what it will
    be charged. Release it exactly once, whatever way the job ends; releasing again does nothing."""

    admission: Admission | None
    job: Job
    chain: tuple[ApiKey, ...]
    label: str
    images: int
    snapshot: RateSnapshot | None
    renew_until: float = 0.0
    released: bool = field(default=False, init=False)

    @property
    def renewed(self) -> bool:
        return any(key.limits.parallel is not None for key in self.chain)

    async def finish(self, event: Event | None) -> None:
        """Release after the job's final ``event`` (None: it was cancelled or its client left)."""
        if self.released:
            return
        self.released = True
        if self.admission is None:
            return
        tokens, refund = 0, self.images
        if event is not None and event.type is EventType.RESULT:
            refund = 0
            if self.job.kind in _TOKEN_KINDS:
                tokens = tokens_used(self.job, event.value())
        await self.admission.release(self, tokens, refund)


class Admission:
    def __init__(self, redis: aioredis.Redis, *, lease_ttl_s: float, window_s: float = WINDOW_S) -> None:
        self._redis = redis
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        self._window_ms = int(window_s * 1000)
        self._admit = redis.register_script(_script("admit"))
        self._release = redis.register_script(_script("release"))
        self._renew = redis.register_script(_script("renew"))
        self._held: dict[str, Lease] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def admit(self, principal: Principal, job: Job, *, new_request: bool = True) -> Lease:
        """Check and record the job against its keys' limits; raise the client's 401/403/429.
        ``new_request=False``: a further job of a request already admitted, which ``rpm`` (requests
        per minute) does not count again; every other limit applies to it as to any job."""
        check_scope_and_model(principal, job)
        chain = principal.chain
        images = images_asked(job)
        if not chain:
            return Lease(None, job, chain, principal.label, images, None)
        keys = [name for key in chain for name in KeyKeys(key.id).admission()]
        try:
            args: list[str | int] = ["", job.id, self._lease_ttl_ms, images, self._window_ms, int(new_request)]
            reply = await self._admit(keys=keys, args=args)
        except RedisError as error:
            raise queue_error(error) from None
        if reply[0] != 1:
            raise self._refusal(principal, chain, reply)
        KEY_REQUESTS.labels(principal.label, "admitted").inc()
        if images:
            KEY_IMAGES.labels(principal.label).inc(images)
        lease = Lease(self, job, chain, principal.label, images, RateSnapshot.from_script(reply))
        if lease.renewed:
            lease.renew_until = job.deadline + job.timeout_s + 5
            self._held[job.id] = lease
            KEY_JOBS_IN_FLIGHT.labels(lease.label).inc()
            self._start_renewer()
        return lease

    async def peek(self, principal: Principal) -> RateSnapshot | None:
        """The key's current request and token limits, for the headers of an answer that queues nothing."""
        chain = principal.chain
        if not any(key.limits.rpm or key.limits.tpm for key in chain):
            return None
        keys = [name for key in chain for name in KeyKeys(key.id).admission()]
        try:
            reply = await self._admit(keys=keys, args=["", "", self._lease_ttl_ms, 0, self._window_ms])
        except RedisError:
            return None
        return RateSnapshot.from_script(reply) if reply[0] == 1 else None

    async def release(self, lease: Lease, tokens: int, refund: int) -> None:
        if self._held.pop(lease.job.id, None) is not None:
            KEY_JOBS_IN_FLIGHT.labels(lease.label).dec()
        if tokens:
            KEY_TOKENS.labels(lease.label).inc(tokens)
        keys = [name for key in lease.chain for name in KeyKeys(key.id).usage()]
        try:
            await self._release(keys=keys, args=["", lease.job.id, tokens, refund, self._window_ms])
        except RedisError as error:
            # The lease expires by itself; the tokens of this one job go uncharged.
            log.warning("could not release the lease of job %s: %s", lease.job.id, error)

    def _refusal(self, principal: Principal, chain: tuple[ApiKey, ...], reply: list[Any]) -> GatewayError:
        reason, wait_ms, index, limit = reply[1].decode(), int(reply[2]), int(reply[3]), reply[4].decode()
        whose = "this API key" if index == 1 else "the key that minted this one"
        if reason == "revoked":
            KEY_REQUESTS.labels(principal.label, "revoked").inc()
            return GatewayError(ErrorKind.AUTHENTICATION, f"{whose} is {'revoked' if limit == 'deleted' else limit}")
        retry_after_s = max(1, math.ceil(wait_ms / 1000))
        if reason == "quota":
            KEY_REQUESTS.labels(principal.label, "quota_exceeded").inc()
            what = "tokens" if limit == "tokens_per_day" else "images"
            return GatewayError(
                ErrorKind.QUOTA_EXCEEDED,
                f"{whose} has used its daily quota of {what} ({limit}={getattr(chain[index - 1].limits, limit)}); "
                f"it resets at 00:00 UTC, in {duration(wait_ms)}",
                retry_after_s=retry_after_s,
            )
        KEY_REQUESTS.labels(principal.label, "rate_limited").inc()
        value = getattr(chain[index - 1].limits, limit)
        return GatewayError(
            ErrorKind.RATE_LIMITED,
            f"{whose} reached its limit {limit}={value}; retry in {duration(wait_ms)}",
            retry_after_s=retry_after_s,
        )

    def _start_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        # A third of the TTL: two renewals may fail (a Redis hiccup) before a lease lapses.
        interval = self._lease_ttl_ms / 3000
        while self._held:
            await asyncio.sleep(interval)
            now = time.time()
            for job_id, lease in list(self._held.items()):
                # A lease whose job cannot still run was lost track of: stop renewing it.
                if now > lease.renew_until:
                    self._held.pop(job_id, None)
                    KEY_JOBS_IN_FLIGHT.labels(lease.label).dec()
            pairs = [
                (KeyKeys(key.id).leases, job_id)
                for job_id, lease in self._held.items()
                for key in lease.chain
                if key.limits.parallel is not None
            ]
            if not pairs:
                continue
            try:
                await self._renew(keys=[key for key, _ in pairs], args=[self._lease_ttl_ms, *(j for _, j in pairs)])
            except RedisError as error:
                log.warning("could not renew %d concurrency leases: %s", len(pairs), error)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
