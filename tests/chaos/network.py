"""Separate hosts on one machine: each worker in a network namespace of its own, joined to the
machine by a bridge, so that a fault can cut one host off the network as a real one would be.

Needs root and ``ip netns`` (Linux). Where either is missing the hosts are plain processes on
127.0.0.1 (:attr:`Network.isolated` is False, and the results say so); scenarios that need a
real network cut are then skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *(["netns", "exec", namespace, "ip"] if namespace else []), *args]
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@dataclass
class Host:
    """Where a process runs: ``address`` is how the other hosts reach it."""

    name: str
    address: str
    namespace: str | None = None
    _link: str | None = None

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run on this host. ``ip netns exec`` execs it: its PID is the command's."""
        return ["ip", "netns", "exec", self.namespace, *command] if self.namespace else command

    def cut_off(self) -> None:
        """Unplug this host's network cable (packets are dropped, nothing is refused)."""
        if self._link is None:
            raise RuntimeError(f"{self.name} is not an isolated host")
        _ip("link", "set", self._link, "down")

    def reconnect(self) -> None:
        if self._link is not None:
            _ip("link", "set", self._link, "up")


@dataclass
class Network:
    #: The address of the machine itself, reachable from every host (the bridge's, or loopback).
    address: str
    isolated: bool
    why_not_isolated: str = ""
    _bridge: str | None = None
    _hosts: list[Host] = field(default_factory=list)
    _subnet: str = ""

    @classmethod
    def create(cls) -> Network:
        problem = cls._why_not_possible()
        if problem:
            return cls("127.0.0.1", isolated=False, why_not_isolated=problem)
        # Names and subnet from the PID, so that two runs on one machine do not collide.
        tag = f"{os.getpid() % 4096:03x}"
        subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
        bridge = f"vch{tag}"
        try:
            _ip("link", "add", "name", bridge, "type", "bridge")
            _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
        except subprocess.CalledProcessError as error:
            return cls("127.0.0.1", isolated=False, why_not_isolated=f"no bridge: {error.stderr.decode().strip()}")
        return cls(f"{subnet}.1", isolated=True, _bridge=bridge, _subnet=subnet)

    @staticmethod
    def _why_not_possible() -> str:
        if os.geteuid() != 0:
            return "not root"
        if shutil.which("ip") is None:
            return "no ip command (iproute2)"
        probe = f"velesio-probe-{os.getpid()}"
        try:
            _ip("netns", "add", probe)
            _ip("netns", "del", probe)
        except (subprocess.CalledProcessError, OSError) as error:
            return f"ip netns does not work here ({getattr(error, 'stderr', b'').decode().strip() or error})"
        return ""

    def host(self, name: str) -> Host:
        """A new host. Isolated: its own namespace with loopback and one link to the bridge."""
        if not self.isolated:
            host = Host(name, "127.0.0.1")
            self._hosts.append(host)
            return host
        index = len(self._hosts) + 10
        namespace = f"velesio-{self._bridge}-{name}"
        link = f"{self._bridge}h{index}"
        _ip("netns", "add", namespace)
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("link", "set", link, "master", self._bridge or "", "up")
        _ip("addr", "add", f"{self._subnet}.{index}/24", "dev", "eth0", namespace=namespace)
        _ip("link", "set", "eth0", "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        host = Host(name, f"{self._subnet}.{index}", namespace, link)
        self._hosts.append(host)
        return host

    def remove(self) -> None:
        for host in self._hosts:
            if host.namespace:
                subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=10)
            if host._link:
                subprocess.run(["ip", "link", "del", host._link], capture_output=True, timeout=10)
        if self._bridge:
            subprocess.run(["ip", "link", "del", self._bridge], capture_output=True, timeout=10)

    def describe(self) -> str:
        if self.isolated:
            return f"each worker on a network namespace of its own, bridged to the machine ({self.address})"
        return f"every process on 127.0.0.1 (no network namespaces: {self.why_not_isolated})"
