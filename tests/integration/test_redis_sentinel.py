"""velesio's Redis clients under Redis Sentinel, against real redis-server and sentinel processes:
they find the master through the sentinels and follow it through a failover. The API's /health
says why when Redis cannot be reached. (The chaos suite fails over under load: tests/chaos.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.support.processes import start_stack, wait_until
from tests.support.sentinel import SentinelSet
from velesio_core import redis_clients
from velesio_core.queue.broker import WakingRedisBroker
from velesio_core.settings import Settings


@pytest.fixture(scope="module")
def sentinels(logs_dir) -> Iterator[SentinelSet]:
    deployment = SentinelSet.start(logs_dir)
    yield deployment
    deployment.stop()


def settings_for(deployment: SentinelSet, **extra: str) -> Settings:
    return Settings.from_env({"API_TOKENS": "t", **deployment.env(), **extra})


def test_the_sync_client_follows_a_failover(sentinels):
    client = redis_clients.sync_client(settings_for(sentinels))
    client.set("before", "1")
    assert client.execute_command("WAIT", 1, 5000) == 1  # the replica has it before it is promoted
    first = sentinels.master()
    second = sentinels.failover()
    assert second.port != first.port

    def writes() -> bool:
        try:
            return bool(client.set("after", "2"))
        except redis.ConnectionError:
            return False

    wait_until(writes, timeout=30, what="a write through the sync client after the failover")
    # The write landed on the new master, not on the old one (now a replica, read-only).
    assert second.client().get("after") == b"2"
    assert second.client().get("before") == b"1"


def test_dramatiqs_broker_uses_the_sentinel_client(sentinels):
    broker = WakingRedisBroker(client=redis_clients.sync_client(settings_for(sentinels)), middleware=[])
    broker.wake("sentinel-test", 1)
    assert sentinels.master_client().llen("dramatiq:sentinel-test.wake") == 1


def test_the_async_client_follows_a_killed_master(sentinels):
    async def scenario() -> bytes:
        client = redis_clients.async_client(settings_for(sentinels))
        await client.set("k", "before")
        sentinels.kill_master()
        for _ in range(300):
            try:
                await client.set("k", "after")
                break
            except redis.ConnectionError:
                await asyncio.sleep(0.1)
        value = await client.get("k")
        await client.aclose()
        return value

    assert asyncio.run(scenario()) == b"after"
    sentinels.nodes = [node for node in sentinels.nodes if node.process.popen.poll() is None]


def test_health_says_why_when_the_sentinels_know_no_master(sentinels, logs_dir):
    stack = start_stack("", None, logs_dir, worker=False, name="no-master",
                        REDIS_SENTINELS=sentinels.addresses, REDIS_SENTINEL_MASTER="no-such-master")  # fmt: skip
    try:
        response = requests.get(stack.url("/health"), timeout=10)
        assert response.status_code == 503
        message = response.json()["error"]["message"]
        assert "Redis" in message and "no master" in message, message
        wait_until(lambda: "Redis is unreachable" in stack.process("no-master-api").log(), timeout=10,
                   what="the API logging why Redis is unreachable")  # fmt: skip
    finally:
        stack.stop()
