"""The CPU time and memory of a stack's processes, read from /proc (Linux), by role: the API
(gunicorn's master and its workers), the worker (the Python process alone), its llama-server, and
Redis."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import RedisServer, Stack

_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("api", "worker", "redis", "llama-server")
#: What velesio adds in front of llama-server: the roles the gateway's CPU is summed over.
GATEWAY = ("api", "worker", "redis")


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces): [0] is the state."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User plus system time of the process, all its threads, not its children."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@dataclass
class StackProcesses:
    """The PIDs of one stack, by role, found once (gunicorn keeps its workers unless one dies,
    which :meth:`cpu` would then notice as a missing PID)."""

    pids: dict[str, list[int]]

    @classmethod
    def of(cls, stack: Stack, redis: RedisServer) -> StackProcesses:
        api = next(p for p in stack.processes if p.name.endswith("-api")).popen.pid
        worker = next(p for p in stack.processes if p.name.endswith("-worker")).popen.pid
        return cls({"api": [api, *children(api)], "worker": [worker], "redis": [redis.process.popen.pid],
                    "llama-server": children(worker)})  # fmt: skip

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, by role (an exited PID raises: its time would be lost)."""
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in self.pids.items()}

    def rss(self) -> dict[str, int]:
        return {role: sum(rss_bytes(pid) for pid in pids) for role, pids in self.pids.items()}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}
