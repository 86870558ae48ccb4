"""The directory through which gunicorn's API processes add up their metrics.

gunicorn forks several API processes and Prometheus reaches one of them per scrape, so the API
runs prometheus-client's multiprocess mode: each process writes its samples to files in
PROMETHEUS_MULTIPROC_DIR, and a scrape adds them up. prometheus-client reads that variable once,
when it is first imported, which is why this module must not import it at its top. A worker is
one process and keeps its metrics in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class MultiprocessDir:
    """The directory the API's processes share their samples through."""

    path: Path
    #: Whether velesio made it (and so removes it), rather than the operator.
    owned: bool

    @classmethod
    def prepare(cls) -> MultiprocessDir:
        """Use PROMETHEUS_MULTIPROC_DIR if set (emptied of a previous run's samples, which would
        otherwise add up with this run's), else a fresh temporary directory; and export it, before
        any metric exists, for this process and the ones it forks."""
        configured = os.environ.get(MULTIPROCESS_ENV)
        if configured:
            path = Path(configured)
            path.mkdir(parents=True, exist_ok=True)
            for stale in path.glob("*.db"):
                stale.unlink()
        else:
            path = Path(tempfile.mkdtemp(prefix="velesio-metrics-"))
        os.environ[MULTIPROCESS_ENV] = str(path)
        return cls(path, owned=not configured)

    def process_exited(self, pid: int) -> None:
        """Drop a dead process's live gauges (streams in flight) from the sums."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.path))

    def remove(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
