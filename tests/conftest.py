"""Fixtures that start real components: Redis, llama-server (through a worker), the API.

Every server listens on a free port of 127.0.0.1 and is stopped by the fixture that started it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import RedisServer, Stack, start_stack
from velesio_core.tiny_model import write_tiny_model


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(logs_dir) -> Iterator[RedisServer]:
    server = RedisServer.start(logs_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def stack(redis_server, tiny_model, logs_dir) -> Iterator[Stack]:
    """The API and one worker with 8 llama-server slots, on Redis database 1."""
    running = start_stack(redis_server.url(1), tiny_model, logs_dir, name="main")
    yield running
    running.stop()
