"""The one place velesio connects to Redis: a single server (REDIS_URL) or the master that Redis
Sentinel names (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).

Under Sentinel every client asks the sentinels for the master when it connects, and again when
the master it had stops answering or turns out to be a replica (redis-py's SentinelConnectionPool).
That alone is not enough: after a failover the old master, if it still runs, keeps taking
writes for up to ten seconds, until the sentinels' next look at it turns it into a replica, and
whatever is written there then is lost. So every process also asks the sentinels every
:data:`FOLLOW_EVERY_S` and drops its connections to a master they no longer name
(:func:`follow_master` for the API's event loop, a thread for the sync clients).

Redis Cluster is not supported: Dramatiq's Lua scripts build key names at run time, which
Cluster cannot route (see the README).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from .settings import Settings

log = logging.getLogger(__name__)

#: A Redis (or sentinel) that stops answering is noticed within this many seconds.
SOCKET_TIMEOUT_S = 5.0
#: Connecting is quicker to give up: an unreachable master is retried through the sentinels.
CONNECT_TIMEOUT_S = 2.0
#: How often a process asks the sentinels which node is master now.
FOLLOW_EVERY_S = 0.2
#: "Redis is unreachable" is logged at most once per this many seconds per process, not per request.
_UNREACHABLE_LOG_EVERY_S = 10.0


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client for worker threads and Dramatiq's broker. ``options`` override the timeouts."""
    options = _common_options(settings) | options
    if not settings.redis_sentinels:
        return sync_client_for_url(settings.redis_url, **options)
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=_sentinel_options(settings), **options)
    client: redis.Redis = sentinel.master_for(settings.redis_sentinel_master)
    follow = threading.Thread(target=_follow_master_sync, args=(client.connection_pool,), daemon=True)
    follow.start()
    return client


def _follow_master_sync(pool: SentinelConnectionPool) -> None:
    # get_master_address() closes idle connections when the master changed; connections in use
    # are closed when released, as the pool no longer owns them (their node is not the master).
    while True:
        time.sleep(FOLLOW_EVERY_S)
        try:
            pool.get_master_address()
        except RedisError:
            continue  # no master known right now: commands fail (and say why) until there is one


def async_client(settings: Settings, **options: Any) -> aioredis.Redis:
    """A client for the API's event loop."""
    options = _common_options(settings) | options
    if not settings.redis_sentinels:
        return async_client_for_url(settings.redis_url, **options)
    sentinels = list(settings.redis_sentinels)
    sentinel = AsyncSentinel(sentinels, sentinel_kwargs=_sentinel_options(settings), **options)
    client: aioredis.Redis = sentinel.master_for(settings.redis_sentinel_master)
    return client


def sync_client_for_url(url: str, **options: Any) -> redis.Redis:
    """A client of one Redis named by URL (tests, benchmarks), with the same timeouts."""
    return redis.Redis.from_url(url, **(_URL_OPTIONS | options))


def async_client_for_url(url: str, **options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, **(_URL_OPTIONS | options))


#: No cap of the pool's own: an API process holds a connection for each job it waits on (its
#: XREAD), a worker one for each job thread, and redis-py's default of 100 would fail the 101st
#: with "Too many connections". API_MAX_CONNECTIONS, QUEUE_CAP and the slots bound them instead.
POOL_MAX_CONNECTIONS = 1_000_000

_URL_OPTIONS: dict[str, Any] = {
    "max_connections": POOL_MAX_CONNECTIONS,
    "socket_timeout": SOCKET_TIMEOUT_S,
    "socket_connect_timeout": CONNECT_TIMEOUT_S,
    "socket_keepalive": True,
    "health_check_interval": 10,
}


async def follow_master(client: aioredis.Redis) -> None:
    """Keep an asyncio client on the master the sentinels name; run it as a task for as long as
    the client lives (a client of one Redis needs none: it returns at once)."""
    pool = client.connection_pool
    if not isinstance(pool, AsyncSentinelConnectionPool):
        return
    while True:
        await asyncio.sleep(FOLLOW_EVERY_S)
        before = pool.master_address
        try:
            now = await pool.get_master_address()
        except RedisError:
            continue
        if before is not None and now != before:
            log.warning("Redis Sentinel names a new master; moving every connection to it")
            # Commands under way on the old master fail with a connection error and are retried
            # by redis-py on the new one: a write the old master took would be lost with it.
            await pool.disconnect(inuse_connections=True)


def _common_options(settings: Settings) -> dict[str, Any]:
    options = dict(_URL_OPTIONS)
    if settings.redis_sentinels:
        # From REDIS_URL otherwise; under Sentinel there is no URL to carry them.
        if settings.redis_password:
            options["password"] = settings.redis_password
        options |= _tls_options(settings)
    elif settings.redis_tls_ca is not None:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca)
    return options


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": CONNECT_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S}
    if settings.redis_sentinel_password:
        options["password"] = settings.redis_sentinel_password
    return options | _tls_options(settings)


def _tls_options(settings: Settings) -> dict[str, Any]:
    if not settings.redis_tls:
        return {}
    options: dict[str, Any] = {"ssl": True}
    if settings.redis_tls_ca is not None:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca)
    return options


def unreachable_reason(error: RedisError) -> str:
    """Why Redis could not be used, in words safe to show a client (no address, no password)."""
    # redis-py has one for each of its sync and asyncio clients.
    if isinstance(error, MasterNotFoundError | AsyncMasterNotFoundError):
        return "the sentinels know no master for REDIS_SENTINEL_MASTER (failover under way, or none reachable)"
    if isinstance(error, AuthenticationError):
        return "it refused the password (REDIS_PASS)"
    if isinstance(error, RedisTimeoutError):
        return "it did not answer in time"
    text = str(error).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "its host name does not resolve"
    if "readonly" in text or "slave" in text or "replica" in text:
        return "it is a replica now (failover under way)"
    return "the connection was lost"


class _Throttle:
    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last = float("-inf")
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._every_s:
                return False
            self._last = now
            return True


_unreachable_log = _Throttle(_UNREACHABLE_LOG_EVERY_S)


def log_unreachable(error: RedisError, doing: str) -> str:
    """Log (at most every few seconds) that Redis is unreachable and why; returns the reason."""
    reason = unreachable_reason(error)
    if _unreachable_log.due():
        # The full error names the address tried, which the operator needs and a client does not.
        log.warning("Redis is unreachable while %s: %s (%s)", doing, reason, error)
    return reason
