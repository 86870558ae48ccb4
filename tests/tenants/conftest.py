"""Two API processes over one Redis and one worker: what every tenant test runs against."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.support.processes import Process, Stack, free_port, start_api, start_stack, wait_until

KEY_SECRET = "test-key-secret-" + "x" * 32
#: Short, so that a test sees a dead API process's lease reclaimed without waiting the default 30 s.
LEASE_TTL_S = 2


@dataclass
class TwoApis:
    a: Stack
    b_url: str
    b: Process

    @property
    def admin(self) -> dict[str, str]:
        return self.a.auth

    @property
    def model(self) -> str:
        return requests.get(self.url("/v1/models"), timeout=10).json()["data"][0]["id"]

    def url(self, path: str, on: str = "a") -> str:
        return (self.a.base_url if on == "a" else self.b_url) + path

    def create(self, on: str = "a", **spec) -> dict:
        spec.setdefault("scopes", ["llm"])
        spec.setdefault("name", "test-key")
        response = requests.post(self.url("/admin/keys", on), json=spec, headers=self.admin, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()


def start_second_api(env: dict[str, str], logs, name: str) -> tuple[str, Process]:
    port = free_port()
    process = start_api(env | {"API_PORT": str(port), "METRICS_PORT": str(free_port())}, logs, name)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(url + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=120, what=f"{name} becoming healthy", interval=0.1)
    return url, process


@pytest.fixture(scope="session")
def apis(redis_server, tiny_model, logs_dir) -> Iterator[TwoApis]:
    settings = {"KEY_SECRET": KEY_SECRET, "KEY_LEASE_TTL": str(LEASE_TTL_S), "MINT_MAX_TTL": "3600"}
    stack = start_stack(redis_server.url(6), tiny_model, logs_dir, name="keys", **settings)
    try:
        b_url, b = start_second_api(stack.env, logs_dir, "keys-api-b")
    except BaseException:
        stack.stop()
        raise
    yield TwoApis(stack, b_url, b)
    b.stop()
    stack.stop()
