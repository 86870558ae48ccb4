"""A real Redis Sentinel deployment for tests: a master, a replica and three sentinels, each a
redis-server process on a free port (sentinels are ``redis-server --sentinel``, which is what
Debian's redis-sentinel runs)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .processes import Process, free_port, spawn, wait_until

MASTER_NAME = "velesio"


def _redis_server() -> str:
    return shutil.which("redis-server") or "redis-server"


@dataclass
class RedisNode:
    port: int
    process: Process
    host: str

    def client(self, **options) -> redis.Redis:
        return redis.Redis(self.host, self.port, socket_timeout=2, socket_connect_timeout=2, **options)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False


@dataclass
class SentinelSet:
    """``host`` is the address every process binds and announces: 127.0.0.1, or a bridge address
    that processes in other network namespaces reach too (tests/chaos)."""

    host: str
    logs: Path
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="velesio-sentinel-")))
    nodes: list[RedisNode] = field(default_factory=list)
    sentinels: list[RedisNode] = field(default_factory=list)

    @classmethod
    def start(cls, logs: Path, *, host: str = "127.0.0.1", replicas: int = 1, sentinels: int = 3) -> SentinelSet:
        deployment = cls(host, logs)
        try:
            master = deployment._start_node()
            for _ in range(replicas):
                deployment._start_node(replica_of=master)
            for _ in range(sentinels):
                deployment._start_sentinel(master, quorum=sentinels // 2 + 1)
            wait_until(deployment._settled, timeout=30, what="the sentinels seeing the master and its replicas")
        except BaseException:
            deployment.stop()
            raise
        return deployment

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS for velesio's processes."""
        return ",".join(f"{self.host}:{sentinel.port}" for sentinel in self.sentinels)

    def env(self) -> dict[str, str]:
        return {"REDIS_SENTINELS": self.addresses, "REDIS_SENTINEL_MASTER": MASTER_NAME, "REDIS_URL": ""}

    def master(self) -> RedisNode:
        """The node the sentinels name as master now."""
        for sentinel in self.sentinels:
            try:
                _host, port = sentinel.client().sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                continue
            return next(node for node in self.nodes if node.port == int(port))
        raise RuntimeError("no sentinel names a master")

    def master_client(self) -> redis.Redis:
        return self.master().client()

    def failover(self) -> RedisNode:
        """Ask the sentinels to promote a replica (SENTINEL FAILOVER); returns the new master once
        every sentinel names it and it accepts writes."""
        old = self.master()
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        return self._wait_for_new_master(old)

    def kill_master(self) -> RedisNode:
        """SIGKILL the master, as a crashed machine; returns the promoted replica (the killed node
        stays in ``nodes``, dead, until :meth:`revive`)."""
        old = self.master()
        old.process.popen.kill()
        old.process.popen.wait()
        return self._wait_for_new_master(old)

    def restart_master(self) -> RedisNode:
        """SIGKILL the master and start it again at once on its port and data (its append-only
        file), quicker than the sentinels declare it down: a restart, not a failover. Returns
        once it answers again."""
        node = self.master()
        node.process.popen.kill()
        node.process.popen.wait()
        self._respawn(node, replica_of=None)
        return node

    def revive(self) -> None:
        """Start every dead node again, as a replica of the current master (the sentinels would
        make it one anyway)."""
        master = self.master()
        for node in self.nodes:
            if node.process.popen.poll() is not None:
                self._respawn(node, replica_of=master)
        wait_until(self._settled, timeout=30, what="the sentinels seeing every replica again")

    def _respawn(self, node: RedisNode, *, replica_of: RedisNode | None) -> None:
        command = self._node_command(node.port)
        if replica_of is not None:
            command += ["--replicaof", self.host, str(replica_of.port)]
        node.process = spawn(f"redis-{node.port}", command, env=dict(os.environ), logs=self.logs)
        wait_until(node.answers, timeout=10, what=f"redis-server on port {node.port} again", interval=0.01)

    def _wait_for_new_master(self, old: RedisNode) -> RedisNode:
        """Until a replica is master and the old master, if it still runs, is its replica (until
        then the old one takes writes that the new one never sees)."""

        def promoted() -> bool:
            try:
                new = self.master()
                if new.port == old.port or new.client().role()[0] != b"master":
                    return False
                return old.process.popen.poll() is not None or old.client().role()[0] == b"slave"
            except (redis.RedisError, RuntimeError):
                return False

        wait_until(promoted, timeout=60, what="a replica becoming master", interval=0.05)
        return self.master()

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.process.stop(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _node_command(self, port: int) -> list[str]:
        data = self.directory / f"redis-{port}"
        data.mkdir(exist_ok=True)
        # An append-only file, so that a restarted master comes back with its queues and streams.
        return [_redis_server(), "--port", str(port), "--bind", self.host, "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--dir", str(data), "--protected-mode", "no"]  # fmt: skip

    def _start_node(self, replica_of: RedisNode | None = None) -> RedisNode:
        port = free_port()
        command = self._node_command(port)
        if replica_of is not None:
            command += ["--replicaof", self.host, str(replica_of.port)]
        node = RedisNode(port, spawn(f"redis-{port}", command, env=dict(os.environ), logs=self.logs), self.host)
        self.nodes.append(node)
        wait_until(node.answers, timeout=10, what=f"redis-server on port {port}")
        return node

    def _start_sentinel(self, master: RedisNode, *, quorum: int) -> RedisNode:
        port = free_port()
        config = self.directory / f"sentinel-{port}.conf"
        # Quick to declare the master down, as the chaos suite's recovery targets need.
        config.write_text(
            f"port {port}\nbind {self.host}\nprotected-mode no\ndir {self.directory}\n"
            f"sentinel monitor {MASTER_NAME} {self.host} {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        process = spawn(f"sentinel-{port}", [_redis_server(), str(config), "--sentinel"], env=dict(os.environ),
                        logs=self.logs)  # fmt: skip
        sentinel = RedisNode(port, process, self.host)
        self.sentinels.append(sentinel)
        wait_until(sentinel.answers, timeout=10, what=f"redis sentinel on port {port}")
        return sentinel

    def _settled(self) -> bool:
        try:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(MASTER_NAME)
                if int(state["num-other-sentinels"]) < len(self.sentinels) - 1:
                    return False
                alive = [node for node in self.nodes if node.process.popen.poll() is None]
                if int(state["num-slaves"]) < len(alive) - 1:
                    return False
        except redis.RedisError:
            return False
        time.sleep(0.1)
        return True
