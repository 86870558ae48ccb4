"""A Python client acting for a velesio API key shares the key's limits with the key's HTTP
clients: one Redis, one worker, the API with KEY_SECRET, keys made through its admin API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.processes import Stack, start_stack
from velesio_core import Client
from velesio_core.client import RateLimited, ScopeDenied, Unauthenticated

KEY_SECRET = "library-test-key-secret-" + "y" * 32


@pytest.fixture(scope="module")
def keyed(redis_server, tiny_model, logs_dir) -> Iterator[Stack]:
    stack = start_stack(redis_server.url(5), tiny_model, logs_dir, name="library-keys", KEY_SECRET=KEY_SECRET)
    yield stack
    stack.stop()


@pytest.fixture
def key_env(monkeypatch):
    # The client reads the API's KEY_SECRET from the environment, as the API does.
    monkeypatch.setenv("KEY_SECRET", KEY_SECRET)


def create_key(stack: Stack, **spec) -> str:
    spec.setdefault("name", "library-test")
    spec.setdefault("scopes", ["llm"])
    response = requests.post(stack.url("/admin/keys"), json=spec, headers=stack.auth, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_a_keys_rate_limit_counts_http_and_client_requests_together(keyed, key_env):
    secret = create_key(keyed, limits={"rpm": 2})
    over_http = requests.post(
        keyed.url("/completion"), json={"prompt": "hi", "n_predict": 2},
        headers={"Authorization": f"Bearer {secret}"}, timeout=60,
    )  # fmt: skip
    assert over_http.status_code == 200
    with Client(keyed.env["REDIS_URL"], key=secret) as client:
        assert client.complete("hi", max_tokens=2).tokens_predicted == 2
        with pytest.raises(RateLimited) as limited:
            client.complete("hi", max_tokens=2)
    assert limited.value.status == 429
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1
    # And the HTTP client of the same key is refused now too.
    refused = requests.post(
        keyed.url("/completion"), json={"prompt": "hi", "n_predict": 2},
        headers={"Authorization": f"Bearer {secret}"}, timeout=60,
    )  # fmt: skip
    assert refused.status_code == 429


def test_a_keys_scopes_and_validity_hold_for_the_client(keyed, key_env):
    embeddings_only = create_key(keyed, scopes=["embeddings"])
    with Client(keyed.env["REDIS_URL"], key=embeddings_only) as client:
        assert len(client.embed("hi").vectors) == 1
        with pytest.raises(ScopeDenied):
            client.complete("hi", max_tokens=2)
    with Client(keyed.env["REDIS_URL"], key=embeddings_only[:-4] + "AAAA") as client, pytest.raises(Unauthenticated):
        client.embed("hi")
