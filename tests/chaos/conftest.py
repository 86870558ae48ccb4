"""The chaos suite runs with `make chaos` (or `pytest tests/chaos`), never inside `make test`: it
breaks a whole deployment on purpose and takes minutes. Its figures go to bench/RESULTS.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster
from .results import ChaosReport

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get("VELESIO_CHAOS") == "1":
        return True
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path != HERE and HERE in collection_path.parents and not _asked_for(config):
        return True
    return None


@pytest.fixture(scope="session")
def chaos_report() -> Iterator[ChaosReport]:
    report = ChaosReport()
    yield report
    if report.scenarios or report.fuzz is not None:
        report.write()


@pytest.fixture(scope="session")
def cluster(logs_dir, tiny_model, chaos_report) -> Iterator[Cluster]:
    running = Cluster.start(logs_dir, tiny_model)
    chaos_report.setup = [
        f"{len(running.apis)} API processes and {len(running.workers)} workers (tiny GGUF, 4 llama-server slots each); "
        f"Redis behind Sentinel: a master, a replica and {len(running.redis.sentinels)} sentinels "
        "(down-after 1 s); each request streams or asks for 12 tokens",
        running.network.describe(),
    ]
    yield running
    running.stop()
