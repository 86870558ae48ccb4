"""Fixtures that start real components: Redis, llama-server (through a worker), the API.

Every server listens on a free port of 127.0.0.1 and is stopped by the fixture that started it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import RedisServer, Stack, start_stack
from tests.support.sd import SdModels, write_sd_models
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


@pytest.fixture(scope="session")
def sd_models(tmp_path_factory) -> SdModels:
    """The tiny Stable Diffusion pipeline as a single-file checkpoint and as a diffusers folder,
    a LoRA and a VAE, in A1111's folder layout."""
    return write_sd_models(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="session")
def sd_stack(redis_server, tiny_model, sd_models, logs_dir) -> Iterator[Stack]:
    """The API and one worker running both llama-server and Stable Diffusion, on Redis database 10."""
    running = start_stack(redis_server.url(10), tiny_model, logs_dir, name="sd", LLAMA_SLOTS="2",
                          API_TOKENS="test-token-sd,second-token-sd", **sd_models.env())  # fmt: skip
    yield running
    running.stop()
