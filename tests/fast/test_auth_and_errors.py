"""Auth, CORS and the errors every dialect shares: each in the shape of the client's own dialect,
always a 4xx for a client's mistake, never a 500 or a traceback (CONTRACTS.md 2.5, 3.2, 4, 6.2, 6.7).

The fast layer: the real API and queue over a fake model (see tests/support/fake_backend.py).
tests/e2e/test_auth_and_errors.py checks the same against the real processes.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from tests.fast.conftest import TOKEN, arrived, run
from tests.support.fake_backend import MODEL, Hold
from tests.support.routes import route_table

INVALID_KEY = {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
BODIES = {
    "/completion": {"prompt": "hi", "n_predict": 1},
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    "/api/chat": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False},
    "/sdapi/v1/txt2img": {"prompt": "x", "steps": 1, "width": 64, "height": 64},
}


def basic(password: str, user: str = "unity") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def shape(body) -> str:
    """Which dialect's error shape a body has."""
    if set(body) == {"detail"} or set(body) == {"error", "detail", "body", "errors"}:
        return "a1111"
    if isinstance(body.get("error"), str):
        return "ollama"
    if set(body["error"]) == {"message", "type", "param", "code"}:
        return "openai"
    assert set(body["error"]) >= {"code", "message", "type"} and isinstance(body["error"]["code"], int), body
    return "llamacpp"


DIALECT_OF = {
    "/completion": "llamacpp",
    "/v1/chat/completions": "openai",
    "/api/chat": "ollama",
    "/sdapi/v1/txt2img": "a1111",
}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": f"bearer {TOKEN}"},
        {"Authorization": TOKEN},  # llama.cpp: the Bearer prefix is optional
        {"X-Api-Key": TOKEN},
        {"Authorization": basic(TOKEN)},  # A1111 clients: the token as Basic auth's password
    ],
    ids=["bearer", "bearer-lowercase", "bare", "x-api-key", "basic"],
)
@pytest.mark.parametrize("path", list(BODIES))
def test_every_credential_form_is_accepted_on_every_dialect(stack, headers, path):
    response = stack.post(path, BODIES[path], auth=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {TOKEN}x"},  # a token of another length
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"X-Api-Key": "nope"},
        {"Authorization": basic("nope")},
        {"Authorization": basic("", user=TOKEN)},  # the token as the user name is not the password
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "longer", "shorter", "x-api-key", "basic", "basic-user", "basic-garbled", "bearer-empty"],
)
@pytest.mark.parametrize("path", list(BODIES))
def test_a_missing_or_wrong_credential_is_401_in_the_dialects_shape(stack, headers, path):
    response = stack.post(path, BODIES[path], auth=headers)
    assert response.status_code == 401
    assert shape(response.json) == DIALECT_OF[path]
    assert stack.llm.received == [] and stack.images.received == []


def test_401_bodies_are_what_each_dialects_clients_expect(stack):
    assert stack.post("/completion", BODIES["/completion"], auth=None).json == INVALID_KEY
    openai = stack.post("/v1/chat/completions", BODIES["/v1/chat/completions"], auth=None).json["error"]
    assert openai["code"] == "invalid_api_key" and openai["type"] == "authentication_error"
    a1111 = stack.post("/sdapi/v1/txt2img", BODIES["/sdapi/v1/txt2img"], auth=None)
    assert a1111.json == {"detail": "Incorrect username or password"}
    assert a1111.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/health"),
        ("POST", "/health"),
        ("GET", "/v1/health"),
        ("GET", "/v1/models"),
        ("GET", "/api/tags"),
        ("GET", "/sdapi/v1/progress"),
    ],
)
def test_public_paths_need_no_token(stack, method, path):
    assert stack.request(method, path, auth=None).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/props"),
        ("POST", "/template"),
        ("GET", "/slots"),
        ("POST", "/tokenize"),
        ("GET", f"/v1/models/{MODEL}"),
        ("GET", "/api/version"),
        ("GET", "/api/ps"),
        ("POST", "/api/show"),
        ("GET", "/sdapi/v1/sd-models"),
        ("GET", "/sdapi/v1/options"),
        ("POST", "/sdapi/v1/interrupt"),
        ("POST", "/internal/progress"),
    ],
)
def test_everything_else_needs_one(stack, method, path):
    assert stack.request(method, path, auth=None).status_code == 401


@pytest.mark.parametrize("path", ["/completion", "/v1/chat/completions", "/api/chat", "/sdapi/v1/txt2img"])
def test_cors_preflight_needs_no_token_and_allows_any_origin_without_credentials(stack, path):
    response = stack.request(
        "OPTIONS", path, auth=None, headers={"Origin": "https://game.example", "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 200
    # CORS_ORIGINS unset: any page, with a token it sets itself, never the browser's credentials.
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    assert "POST" in response.headers["access-control-allow-methods"]


def test_the_preflight_allows_every_method_a_route_takes(stack):
    taken = {method for route in route_table() for method in route.methods} - {"OPTIONS"}
    preflight = stack.request("OPTIONS", "/admin/keys/x", auth=None, headers={"Origin": "https://game.example"})
    allowed = {method.strip() for method in preflight.headers["access-control-allow-methods"].split(",")}
    assert taken <= allowed


def test_any_origin_is_allowed_on_answers_and_errors_too(stack):
    origin = {"Origin": "https://game.example"}
    assert stack.get("/health", headers=origin).headers["access-control-allow-origin"] == "*"
    refused = stack.post("/completion", BODIES["/completion"], auth=None, headers=origin)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"


def test_listed_origins_alone_are_echoed_with_credentials(make_stack):
    stack = make_stack(CORS_ORIGINS="https://game.example")
    listed = stack.request("OPTIONS", "/completion", auth=None, headers={"Origin": "https://game.example"})
    assert listed.headers["access-control-allow-origin"] == "https://game.example"
    assert listed.headers["access-control-allow-credentials"] == "true"
    for origin in ("https://evil.example", "null"):
        other = stack.request("OPTIONS", "/completion", auth=None, headers={"Origin": origin})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/no/such/route", "llamacpp"),
        ("/v1/nothing", "openai"),
        ("/api/nothing", "ollama"),
        ("/sdapi/v1/nothing", "a1111"),
    ],
)
def test_an_unknown_route_is_404_in_its_dialects_shape(stack, path, dialect):
    response = stack.get(path)
    assert response.status_code == 404 and shape(response.json) == dialect
    if dialect == "llamacpp":
        assert response.json["error"]["message"] == "File Not Found"  # llama-server's words


@pytest.mark.parametrize("path", list(BODIES))
def test_a_wrong_method_is_405_in_its_dialects_shape(stack, path):
    response = stack.get(path)
    assert response.status_code == 405 and shape(response.json) == DIALECT_OF[path]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"prompt": "hi",', "not valid JSON"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b'["hi"]', "JSON object"),
        (b'"hi"', "JSON object"),
        (b"null", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
@pytest.mark.parametrize("path", list(BODIES))
def test_a_body_that_is_not_a_json_object_is_400_in_its_dialects_shape(stack, path, body, words):
    response = stack.post(path, body=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert shape(response.json) == DIALECT_OF[path] and words in response.text


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_max_body_bytes_is_413_in_its_dialects_shape(stack, path, declared):
    huge = b'{"prompt": "' + b"a" * stack.settings.max_body_bytes + b'"}'
    written = stack.writes("POST", path, body=huge, declared_length=declared)
    assert written.status == 413
    assert shape(json.loads(written.body)) == DIALECT_OF[path]


def test_a_body_just_under_the_limit_is_read(stack):
    body = b'{"content": "' + b"a" * (stack.settings.max_body_bytes - 20) + b'"}'
    assert stack.post("/tokenize", body=body, headers={"Content-Type": "application/json"}).status_code == 200


def test_no_worker_at_all_is_503_with_a_retry_hint_in_every_dialect(make_stack):
    stack = make_stack(llm=False, images=False)
    for path, body in BODIES.items():
        response = stack.post(path, body)
        assert response.status_code == 503 and shape(response.json) == DIALECT_OF[path], response.text
        assert int(response.headers["retry-after"]) > 0


def test_a_full_queue_is_503_with_a_retry_hint(make_stack):
    # One generation at a time, one waiting: the third is refused at once.
    stack = make_stack(LLAMA_SLOTS="1", QUEUE_CAP="1")
    stack.llm.hold = hold = Hold()

    async def crowd():
        running = asyncio.ensure_future(stack.arequest("POST", "/completion", json=BODIES["/completion"]))
        await arrived(lambda: hold.arrived == 1, "the first generation starting")
        waiting = asyncio.ensure_future(stack.arequest("POST", "/completion", json=BODIES["/completion"]))
        await asyncio.sleep(0.01)
        refused = await stack.arequest("POST", "/v1/chat/completions", json=BODIES["/v1/chat/completions"])
        hold.release()
        return refused, await running, await waiting

    refused, first, second = run(crowd)
    assert refused.status_code == 503 and shape(refused.json) == "openai"
    assert int(refused.headers["retry-after"]) > 0 and "busy" in refused.json["error"]["message"]
    assert first.status_code == second.status_code == 200


def test_a_job_no_worker_starts_before_its_deadline_is_503(make_stack):
    stack = make_stack(LLAMA_SLOTS="1", JOB_DEADLINE="0.2")
    stack.llm.hold = hold = Hold()

    async def late():
        running = asyncio.ensure_future(stack.arequest("POST", "/completion", json=BODIES["/completion"]))
        await arrived(lambda: hold.arrived == 1, "the first generation starting")
        expired = await stack.arequest("POST", "/completion", json=BODIES["/completion"])
        hold.release()
        return expired, await running

    expired, first = run(late)
    assert expired.status_code == 503 and expired.json["error"]["type"] == "unavailable_error"
    assert int(expired.headers["retry-after"]) > 0 and first.status_code == 200


def test_no_error_leaks_a_traceback_or_a_token(stack, caplog):
    stack.post("/completion", body=b"{", headers={"Authorization": "Bearer wrong-secret"})
    stack.post("/completion", {"prompt": 5})
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and "wrong-secret" not in record.getMessage()


POST_ROUTES = [
    "/health", "/v1/health", "/props", "/template", "/completion", "/completions", "/tokenize", "/detokenize",
    "/apply-template", "/embeddings", "/embedding", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
    "/api/show", "/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img", "/sdapi/v1/options", "/api/options", "/internal/progress",
]  # fmt: skip


@pytest.mark.parametrize("path", POST_ROUTES)
def test_no_route_answers_a_clients_mistake_with_a_5xx(stack, path):
    for body in (b"{", b"[]", b"null", b'{"unknown": {"deeply": [1, null]}}', b'{"model": 5, "prompt": 5}'):
        response = stack.post(path, body=body, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (body, response.text)
        assert "Traceback" not in response.text
