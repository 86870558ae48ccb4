"""What this machine offers, and the process and thread counts velesio derives from it.

An operator who sets nothing gets the deployment ``make bench`` measures: the counts below are
chosen from the CPUs this process may use, and every one of them has a setting that overrides it
(LLAMA_THREADS, API_WORKERS). bench/RESULTS.md records the derived values with its figures.
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path

#: cgroup v2's CPU quota for this process's group ("max 100000", or "200000 100000": 2 CPUs).
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
#: The soft limit on open files taken where the hard one is unlimited.
_NO_HARD_LIMIT_FILES = 1 << 20


def usable_cpus(cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on (its affinity), fewer if a container's quota says so."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


def llama_threads(cpus: int, gpu_layers: int) -> int:
    """llama-server's generation threads; 0 lets llama.cpp choose.

    On the CPU, llama.cpp's threads spin while they compute, and by default it takes every core:
    the API, the worker and Redis on the same machine then wait for a core on every token
    (``make bench`` measures llama.cpp's own choice beside this one). So one core is left to the
    gateway on small machines and two on larger ones. With layers on a GPU the
    threads mostly wait for it, and llama.cpp's own choice stands.
    """
    if gpu_layers != 0:
        return 0
    return max(1, cpus - (1 if cpus <= 4 else 2))


def api_workers(cpus: int) -> int:
    """API processes: one asynchronous process relays hundreds of streams, and each more costs
    its memory and a share of every core; one per four CPUs, at most eight."""
    return max(1, min(8, cpus // 4))


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files to its hard limit, as Go's runtime does for
    every program; returns (soft, hard) after. A service's soft limit is often 1,024 (systemd's
    default) while the API holds two descriptors per waiting request (the client's socket and
    the job's Redis connection) up to API_MAX_CONNECTIONS, so the default would refuse
    connections at about 500 waiting requests with "Too many open files"."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, _NO_HARD_LIMIT_FILES)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft, hard
