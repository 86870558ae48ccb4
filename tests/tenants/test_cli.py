"""``velesio-keys`` against a real Redis, as an operator runs it, and its keys through a real API."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
import requests

from tests.support.processes import service_env
from tests.tenants.conftest import KEY_SECRET


@pytest.fixture
def keys_cli(apis):
    env = service_env(REDIS_URL=apis.a.env["REDIS_URL"], KEY_SECRET=KEY_SECRET)

    def run(*args: str, ok: bool = True):
        done = subprocess.run([sys.executable, "-m", "velesio_core.tenants.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if ok:
            assert done.returncode == 0, done.stderr
            return orjson.loads(done.stdout)
        return done

    return run


def test_create_show_rotate_revoke(keys_cli, apis):
    created = keys_cli("create", "unity-build", "--scopes", "llm", "--rpm", "30", "--tokens-per-day", "5000")
    assert created["limits"]["rpm"] == 30 and created["scopes"] == ["llm"]
    secret = created["key"]
    headers = {"Authorization": f"Bearer {secret}"}
    answer = requests.post(apis.url("/completion", "b"), json={"prompt": "hi", "n_predict": 2}, headers=headers)
    assert answer.status_code == 200 and answer.headers["x-ratelimit-limit-requests"] == "30"

    shown = keys_cli("show", created["id"])
    assert "key" not in shown and shown["usage"]["requests_last_minute"] == 1
    assert created["id"] in {key["id"] for key in keys_cli("list")}

    rotated = keys_cli("rotate", created["id"], "--grace", "0")
    assert rotated["key"] != secret
    assert keys_cli("revoke", created["id"]) == {"id": created["id"], "revoked": True}
    gone = keys_cli("show", created["id"], ok=False)
    assert gone.returncode == 1 and "no key has the id" in gone.stderr
    actions = [entry["action"] for entry in keys_cli("audit") if entry["key"] == created["id"]]
    assert actions == ["revoke", "rotate", "create"]


def test_bad_input_and_a_missing_secret_are_one_line_errors(keys_cli, apis):
    bad = keys_cli("create", "x", "--scopes", "root", ok=False)
    assert bad.returncode == 2 and "scopes" in bad.stderr and "Traceback" not in bad.stderr
    env = service_env(REDIS_URL=apis.a.env["REDIS_URL"])
    done = subprocess.run([sys.executable, "-m", "velesio_core.tenants.cli", "list"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "KEY_SECRET" in done.stderr
