"""Stored API keys end to end: two API processes, one Redis, one worker with the tiny model.

Keys are created through one process and used through the other, so every check also shows
that limits, revocations and rotations hold across processes.
"""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest
import requests

from tests.support.llmunity import post_chunks
from tests.support.processes import start_stack, wait_until
from tests.tenants.conftest import LEASE_TTL_S, start_second_api
from velesio_core.tenants.authn import CACHE_TTL_S

COMPLETION = {"prompt": "hi", "n_predict": 2}
#: OpenAI's and Ollama's requests name the model; tests fill in the tiny model's name for it.
CHAT = {"model": "", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
LONG_STREAM = {"prompt": "a long tale", "n_predict": 4000, "ignore_eos": True, "stream": True}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def complete(apis, secret: str, on: str = "a", body: dict | None = None) -> requests.Response:
    return requests.post(apis.url("/completion", on), json=body or COMPLETION, headers=bearer(secret), timeout=60)


def test_api_tokens_still_work_as_admin_keys_without_rate_limit_headers(apis):
    response = complete(apis, apis.a.token)
    assert response.status_code == 200, response.text
    assert not any(name.startswith("x-ratelimit") for name in response.headers)


def test_a_key_made_on_one_process_works_on_the_other_and_its_secret_is_not_in_redis(apis, redis_server):
    created = apis.create(name="game-build")
    secret = created["key"]
    assert secret.startswith(f"vsk_{created['id']}_")
    assert complete(apis, secret, on="b").status_code == 200
    client = redis_server.client(db=6)
    for key in client.scan_iter("velesio:key*"):
        if client.type(key) == b"hash":
            assert secret.encode() not in b"".join(client.hgetall(key).values())
        elif client.type(key) == b"stream":
            assert secret.encode() not in orjson.dumps([str(e) for e in client.xrange(key)])


def test_unknown_and_malformed_keys_are_401(apis):
    created = apis.create()
    forged = created["key"][:-4] + "AAAA"
    for secret in (forged, "vsk_000000000000_nothing", "vsk_", "not-a-key"):
        response = complete(apis, secret, on="b")
        assert response.status_code == 401, secret
        assert response.json()["error"]["type"] == "authentication_error"


SCOPE_CASES = [
    # (path, body, needed scope, the dialect's error check)
    ("/completion", COMPLETION, "llm", lambda body: body["error"]["type"] == "permission_error"),
    ("/v1/chat/completions", CHAT, "llm", lambda body: body["error"]["type"] == "permission_error"),
    ("/api/chat", {**CHAT, "stream": False}, "llm", lambda body: isinstance(body["error"], str)),
    ("/v1/embeddings", {"input": "hi"}, "embeddings", lambda body: body["error"]["type"] == "permission_error"),
    ("/sdapi/v1/txt2img", {"prompt": "x"}, "images", lambda body: body["error"] == "HTTPException"),
    ("/metrics", None, "metrics", lambda body: body["error"]["type"] == "permission_error"),
    ("/admin/keys", None, "admin", lambda body: body["error"]["type"] == "permission_error"),
]


@pytest.mark.parametrize(("path", "body", "scope", "shaped"), SCOPE_CASES, ids=[case[0] for case in SCOPE_CASES])
def test_a_path_outside_the_keys_scopes_is_403_in_its_dialects_shape(apis, path, body, scope, shaped):
    others = [name for name in ("llm", "embeddings", "images", "metrics") if name != scope]
    secret = apis.create(scopes=others)["key"]
    call = requests.post if body is not None else requests.get
    body = {**body, "model": apis.model} if body and "model" in body else body
    response = call(apis.url(path, "b"), json=body, headers=bearer(secret), timeout=60)
    assert response.status_code == 403, response.text
    assert shaped(response.json()), response.text


def test_each_scope_reaches_its_paths(apis):
    model = requests.get(apis.url("/v1/models"), timeout=10).json()["data"][0]["id"]
    embeddings = apis.create(scopes=["embeddings"])["key"]
    body = {"input": "hi", "model": model}
    response = requests.post(apis.url("/v1/embeddings", "b"), json=body, headers=bearer(embeddings), timeout=60)
    assert response.status_code == 200, response.text
    metrics = apis.create(scopes=["metrics"])["key"]
    assert requests.get(apis.url("/metrics", "b"), headers=bearer(metrics), timeout=10).status_code == 200
    llm = apis.create(scopes=["llm"])["key"]
    for path in ("/props", "/template"):
        assert requests.post(apis.url(path, "b"), json={}, headers=bearer(llm), timeout=10).status_code == 200


def test_a_model_outside_the_allowlist_is_403(apis):
    model = apis.model
    other = apis.create(models=["some-other-model"])["key"]
    body = {**CHAT, "model": model}
    response = requests.post(apis.url("/v1/chat/completions", "b"), json=body, headers=bearer(other), timeout=60)
    assert response.status_code == 403
    assert "may not use the model" in response.json()["error"]["message"]
    allowed = apis.create(models=[model])["key"]
    assert complete(apis, allowed, on="b").status_code == 200


def test_rpm_is_shared_by_both_processes_with_headers_and_the_real_wait(apis):
    secret = apis.create(limits={"rpm": 2})["key"]
    first = complete(apis, secret, on="a")
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    second = complete(apis, secret, on="b")
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    # An answer that queues no job reports the limits and does not count against them.
    props = requests.get(apis.url("/props", "b"), headers=bearer(secret), timeout=10)
    assert props.status_code == 200 and props.headers["x-ratelimit-remaining-requests"] == "0"
    body = {"model": apis.model, "prompt": "hi", "max_tokens": 2}
    refused = requests.post(apis.url("/v1/completions", "a"), json=body, headers=bearer(secret), timeout=60)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    ("path", "body", "shaped"),
    [
        ("/completion", COMPLETION, lambda body: body["error"]["code"] == 429),
        ("/api/generate", {"model": "x", "prompt": "hi", "stream": False}, lambda body: "limit" in body["error"]),
        ("/v1/chat/completions", CHAT, lambda body: body["error"]["code"] == "rate_limit_exceeded"),
    ],
)
def test_a_rate_limit_is_429_in_each_dialects_shape(apis, path, body, shaped):
    body = {**body, "model": apis.model} if "model" in body else body
    secret = apis.create(limits={"rpm": 1})["key"]
    assert requests.post(apis.url(path), json=body, headers=bearer(secret), timeout=60).status_code == 200
    refused = requests.post(apis.url(path, "b"), json=body, headers=bearer(secret), timeout=60)
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert shaped(refused.json()), refused.text


def test_a_spent_daily_token_quota_is_insufficient_quota_until_midnight(apis):
    secret = apis.create(limits={"tokens_per_day": 3})["key"]
    assert complete(apis, secret, on="a").status_code == 200  # charged with its real usage, > 3 tokens
    body = {**CHAT, "model": apis.model}
    refused = requests.post(apis.url("/v1/chat/completions", "b"), json=body, headers=bearer(secret), timeout=60)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
    to_midnight = 86400 - time.time() % 86400
    assert abs(int(refused.headers["retry-after"]) - to_midnight) < 5
    assert "resets at 00:00 UTC" in error["message"]


def test_tokens_per_minute_are_charged_and_reported(apis):
    secret = apis.create(limits={"tpm": 1000})["key"]
    first = complete(apis, secret)
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "1000"  # charged when the answer is complete
    used = first.json()["tokens_evaluated"] + first.json()["tokens_predicted"]
    second = complete(apis, secret, on="b")
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - used


def test_a_stream_carries_the_headers_before_its_first_byte(apis):
    secret = apis.create(limits={"rpm": 5, "tpm": 10_000})["key"]
    status, headers, chunks = post_chunks(apis.url("/completion", "b"), orjson.dumps({**COMPLETION, "stream": True}),
                                          bearer(secret))  # fmt: skip
    assert status == 200
    assert headers["x-ratelimit-remaining-requests"] == "4" and headers["x-ratelimit-limit-tokens"] == "10000"
    list(chunks)


def test_a_lease_is_freed_when_its_client_disconnects(apis):
    secret = apis.create(limits={"parallel": 1})["key"]
    status, _, chunks = post_chunks(apis.url("/completion", "a"), orjson.dumps(LONG_STREAM), bearer(secret))
    assert status == 200
    next(chunks)
    refused = complete(apis, secret, on="b")
    assert refused.status_code == 429 and "parallel=1" in refused.json()["error"]["message"]
    chunks.close()
    # Freed by the disconnect, long before the lease could expire by itself.
    wait_until(lambda: complete(apis, secret, on="b").status_code == 200, timeout=LEASE_TTL_S * 0.75,
               what="the lease freed by the disconnect", interval=0.1)  # fmt: skip


def test_a_client_asking_again_after_each_answer_finds_its_slot_free(apis):
    secret = apis.create(limits={"parallel": 1})["key"]
    with requests.Session() as session:  # one keep-alive connection, as game clients keep theirs
        for _ in range(4):
            answer = session.post(apis.url("/completion", "b"), json=COMPLETION, headers=bearer(secret), timeout=60)
            assert answer.status_code == 200, answer.text
    shown = requests.get(apis.url(f"/admin/keys/{secret.split('_')[1]}"), headers=apis.admin, timeout=10).json()
    assert shown["usage"]["in_flight"] == 0 and shown["usage"]["tokens_today"] > 0


def test_a_lease_of_an_api_process_killed_mid_job_is_reclaimed(apis, logs_dir):
    secret = apis.create(limits={"parallel": 1})["key"]
    doomed_url, doomed = start_second_api(apis.a.env, logs_dir, "keys-api-doomed")
    try:
        status, _, chunks = post_chunks(doomed_url + "/completion", orjson.dumps(LONG_STREAM), bearer(secret))
        assert status == 200
        next(chunks)
        os.killpg(doomed.popen.pid, signal.SIGKILL)
        doomed.popen.wait()
        assert complete(apis, secret, on="a").status_code == 429  # the dead process's lease still holds
        wait_until(lambda: complete(apis, secret, on="b").status_code == 200, timeout=LEASE_TTL_S * 10,
                   what="the dead process's lease reclaimed", interval=0.2)  # fmt: skip
    finally:
        doomed.stop()


def test_revocation_reaches_every_process_within_a_second(apis):
    created = apis.create()
    secret = created["key"]
    assert requests.get(apis.url("/props", "b"), headers=bearer(secret), timeout=10).status_code == 200  # cached
    response = requests.delete(apis.url(f"/admin/keys/{created['id']}"), headers=apis.admin, timeout=10)
    assert response.json() == {"id": created["id"], "revoked": True}
    # Jobs are refused at once: admission reads the key's state in Redis.
    assert complete(apis, secret, on="b").status_code == 401
    time.sleep(CACHE_TTL_S + 0.1)
    assert requests.get(apis.url("/props", "b"), headers=bearer(secret), timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "shaped"),
    [
        ("/completion", COMPLETION, lambda r: r.json()["error"]["type"] == "authentication_error"),
        ("/v1/chat/completions", CHAT, lambda r: r.json()["error"]["code"] == "invalid_api_key"),
        ("/api/chat", CHAT, lambda r: isinstance(r.json()["error"], str)),
        (
            "/sdapi/v1/txt2img",
            {"prompt": "x"},
            lambda r: "detail" in r.json() and "Basic" in r.headers["www-authenticate"],
        ),
    ],
)
def test_a_revoked_key_is_401_in_each_dialects_shape(apis, path, body, shaped):
    created = apis.create(scopes=["llm", "images"])
    requests.delete(apis.url(f"/admin/keys/{created['id']}"), headers=apis.admin, timeout=10).raise_for_status()
    time.sleep(CACHE_TTL_S + 0.1)
    response = requests.post(apis.url(path, "b"), json=body, headers=bearer(created["key"]), timeout=30)
    assert response.status_code == 401 and shaped(response), response.text


def test_a_disabled_key_is_401_and_works_again_when_enabled(apis):
    created = apis.create()
    path = f"/admin/keys/{created['id']}"
    requests.patch(apis.url(path), json={"disabled": True}, headers=apis.admin, timeout=10).raise_for_status()
    assert complete(apis, created["key"], on="b").status_code == 401
    requests.patch(apis.url(path, "b"), json={"disabled": False}, headers=apis.admin, timeout=10).raise_for_status()
    assert complete(apis, created["key"], on="a").status_code == 200


def test_an_expired_key_is_401(apis):
    secret = apis.create(expires_in=0.5)["key"]
    time.sleep(0.6)
    assert complete(apis, secret, on="b").status_code == 401


def test_rotation_keeps_the_old_secret_for_its_grace_then_drops_it(apis):
    created = apis.create()
    path = f"/admin/keys/{created['id']}/rotate"
    rotated = requests.post(apis.url(path), json={"grace_s": 600}, headers=apis.admin, timeout=10).json()
    assert rotated["key"] != created["key"]
    assert complete(apis, created["key"], on="b").status_code == 200
    assert complete(apis, rotated["key"], on="b").status_code == 200
    again = requests.post(apis.url(path, "b"), json={"grace_s": 0}, headers=apis.admin, timeout=10).json()
    time.sleep(CACHE_TTL_S + 0.1)
    assert complete(apis, rotated["key"], on="a").status_code == 401
    assert complete(apis, again["key"], on="a").status_code == 200


def test_a_minting_key_makes_children_within_itself_that_count_against_it(apis):
    parent = apis.create(name="studio-backend", scopes=["llm", "mint"], limits={"rpm": 3})
    mint = bearer(parent["key"])

    def mint_child(**spec):
        spec.setdefault("name", "player-session")
        spec.setdefault("scopes", ["llm"])
        return requests.post(apis.url("/admin/keys", "b"), json=spec, headers=mint, timeout=10)

    first, second = mint_child(limits={"rpm": 2}), mint_child(expires_in=60)
    assert first.status_code == second.status_code == 201
    assert first.json()["parent"] == parent["id"]
    assert first.json()["expires_at"] - time.time() <= 3600  # MINT_MAX_TTL
    for refused in (mint_child(scopes=["images"]), mint_child(scopes=["llm", "mint"]), mint_child(limits={"rpm": 9}),
                    mint_child(expires_in=7200)):  # fmt: skip
        assert refused.status_code == 403, refused.text
        assert "fit inside its parent" in refused.json()["error"]["message"]

    child_a, child_b = first.json()["key"], second.json()["key"]
    assert complete(apis, child_a, on="a").status_code == 200
    assert complete(apis, child_a, on="b").status_code == 200
    assert complete(apis, child_a, on="a").status_code == 429  # its own rpm=2
    assert complete(apis, child_b, on="b").status_code == 200  # the parent's third
    refused = complete(apis, child_b, on="a")
    assert refused.status_code == 429 and "the key that minted this one" in refused.json()["error"]["message"]

    # A minted key cannot mint, and its parent sees only its own children.
    assert requests.post(apis.url("/admin/keys"), json={"name": "x", "scopes": ["llm"]}, headers=bearer(child_a),
                         timeout=10).status_code == 403  # fmt: skip
    listed = requests.get(apis.url("/admin/keys"), headers=mint, timeout=10).json()["keys"]
    assert {key["id"] for key in listed} == {first.json()["id"], second.json()["id"]}
    other = apis.create()
    assert requests.get(apis.url(f"/admin/keys/{other['id']}"), headers=mint, timeout=10).status_code == 404
    assert requests.patch(apis.url(f"/admin/keys/{first.json()['id']}"), json={"disabled": True}, headers=mint,
                          timeout=10).status_code == 403  # fmt: skip

    # Revoking the parent revokes what it minted.
    requests.delete(apis.url(f"/admin/keys/{parent['id']}"), headers=apis.admin, timeout=10).raise_for_status()
    time.sleep(CACHE_TTL_S + 0.1)
    assert requests.get(apis.url("/props", "b"), headers=bearer(child_b), timeout=10).status_code == 401


def test_show_reports_usage_and_bad_admin_input_is_400(apis):
    created = apis.create(limits={"rpm": 10, "tokens_per_day": 100_000})
    complete(apis, created["key"], on="b")
    shown = requests.get(apis.url(f"/admin/keys/{created['id']}"), headers=apis.admin, timeout=10).json()
    assert shown["usage"]["requests_last_minute"] == 1 and shown["usage"]["tokens_today"] > 0
    assert "key" not in shown
    for spec in ({"name": "x", "scopes": ["root"]}, {"name": "", "scopes": ["llm"]},
                 {"name": "x", "scopes": ["llm"], "limits": {"rpm": 0}}, {"name": "x"}):  # fmt: skip
        response = requests.post(apis.url("/admin/keys"), json=spec, headers=apis.admin, timeout=10)
        assert response.status_code == 400, response.text
    missing = requests.get(apis.url("/admin/keys/000000000000"), headers=apis.admin, timeout=10)
    assert missing.status_code == 404


def test_admin_actions_are_audited_without_secrets(apis):
    created = apis.create(name="audited")
    rotated = requests.post(apis.url(f"/admin/keys/{created['id']}/rotate"), json={}, headers=apis.admin).json()
    requests.delete(apis.url(f"/admin/keys/{created['id']}", "b"), headers=apis.admin, timeout=10)
    entries = requests.get(apis.url("/admin/audit"), headers=apis.admin, timeout=10).json()["entries"]
    mine = [entry for entry in entries if entry["key"] == created["id"]]
    assert [entry["action"] for entry in mine] == ["revoke", "rotate", "create"]
    assert all(entry["actor"] == "api-token" and entry["name"] == "audited" for entry in mine)
    text = orjson.dumps(entries).decode()
    assert created["key"] not in text and rotated["key"] not in text
    assert created["key"] not in apis.a.process("keys-api").log() + apis.b.log()


def test_per_key_metrics_count_minted_keys_under_their_parent(apis):
    parent = apis.create(name="metered-studio", scopes=["llm", "mint"], limits={"rpm": 1})
    child = requests.post(apis.url("/admin/keys"), json={"name": "p1", "scopes": ["llm"]},
                          headers=bearer(parent["key"]), timeout=10).json()  # fmt: skip
    complete(apis, child["key"])
    complete(apis, child["key"])  # refused: the parent's rpm
    text = requests.get(apis.url("/metrics"), headers=apis.admin, timeout=10).text
    assert 'velesio_api_key_requests_total{key="metered-studio",outcome="admitted"} 1.0' in text
    assert 'velesio_api_key_requests_total{key="metered-studio",outcome="rate_limited"} 1.0' in text
    assert 'key="p1"' not in text


def test_without_a_key_secret_the_admin_surface_is_404_and_api_tokens_work(redis_server, tiny_model, logs_dir):
    stack = start_stack(redis_server.url(7), tiny_model, logs_dir, name="nokeys", worker=False)
    try:
        body = {"name": "x", "scopes": ["llm"]}
        response = requests.post(stack.url("/admin/keys"), json=body, headers=stack.auth, timeout=10)
        assert response.status_code == 404 and "KEY_SECRET" in response.json()["error"]["message"]
        # Past auth (not 401): 503, since this stack runs no worker.
        assert requests.get(stack.url("/props"), headers=stack.auth, timeout=10).status_code == 503
    finally:
        stack.stop()
