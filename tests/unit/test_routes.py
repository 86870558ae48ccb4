"""What the route modules declare: which paths need no token, and which dialect each speaks.

The e2e tests check a few of these over HTTP; this one pins the whole table, so that a route
moved between modules cannot silently change who may call it or how its errors look.
"""

from __future__ import annotations

import falcon.asgi
import orjson
import pytest
from falcon.routing import CompiledRouter

from velesio_api import console
from velesio_api.app import add_routes
from velesio_api.errors import render
from velesio_api.relay import Relay
from velesio_api.routes import admin
from velesio_api.routing import Routes
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.settings import Settings
from velesio_core.stored_responses import MemoryResponseStore
from velesio_core.tenants.config import TenantSettings


@pytest.fixture(scope="module")
def routes() -> Routes:
    router = CompiledRouter()
    declared = Routes(falcon.asgi.App(router=router), router)
    # The resources only keep what they are given until a request comes; none comes here. The
    # images routes read the body limit from the settings as they are added.
    relay = Relay(queue=None, models=None, settings=Settings.from_env({}))
    add_routes(declared, relay, board=None, stored_responses=MemoryResponseStore())
    admin.add_routes(declared, relay, None, TenantSettings(server_secret=None, mint_max_ttl_s=0, lease_ttl_s=30))
    console.add_routes(declared, None)
    return declared


def test_the_public_paths_are_the_health_checks_the_model_lists_and_a1111_progress(routes):
    assert routes.public_paths == {
        "/",
        "/health",
        "/v1/health",
        "/v1/models",
        "/api/tags",
        "/sdapi/v1/progress",
        "/models",
        "/ui",
        "/ui/",
        "/ui/*",
    }


def test_public_paths_and_preflights(routes):
    assert (
        routes.is_public("GET", "/health") and routes.is_public("POST", "/v1/health") and routes.is_public("GET", "/")
    )
    assert routes.is_public("OPTIONS", "/completion")
    assert not routes.is_public("POST", "/completion") and not routes.is_public("GET", "/props")
    # One model's entry needs a token; /models is /v1/models' twin, as on llama-server.
    assert not routes.is_public("GET", "/v1/models/tiny") and routes.is_public("GET", "/models")
    # The agents' dialects and OpenAI's images need a token.
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/responses/input_tokens"):
        assert not routes.is_public("POST", path)
    assert not routes.is_public("POST", "/v1/images/generations") and not routes.is_public("POST", "/v1/images/edits")


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/completion", "llamacpp"),
        ("/health", "llamacpp"),
        ("/", "llamacpp"),
        ("/no/such/route", "llamacpp"),
        ("/v1/health", "openai"),
        ("/v1/chat/completions", "openai"),
        ("/v1/models/some-model", "openai"),
        ("/v1/no/such/route", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
        ("/v1/messages/no-such-route", "anthropic"),
        ("/v1/responses", "openai"),
        ("/v1/responses/input_tokens", "openai"),
        ("/v1/responses/resp_123", "openai"),
        ("/v1/images/generations", "openai"),
        ("/v1/images/edits", "openai"),
        ("/admin/keys", "llamacpp"),
        ("/admin/keys/key_1/rotate", "llamacpp"),
        ("/api/chat", "ollama"),
        ("/api/no-such-route", "ollama"),
        ("/api/options", "a1111"),
        ("/api/sd-models", "a1111"),
        ("/api/options/no-such-route", "a1111"),
        ("/internal/progress/no-such-route", "a1111"),
        ("/v1/healthz", "openai"),
        ("/internal/progress", "a1111"),
        ("/sdapi/v1/txt2img", "a1111"),
        ("/sdapi/v1/no-such-route", "a1111"),
    ],
)
def test_each_path_speaks_the_dialect_of_its_route_or_prefix(routes, path, dialect):
    assert routes.dialect_of_path(path).name == dialect


def test_a_templated_public_route_makes_its_prefix_public_for_the_methods_it_names(routes):
    # The console's files: auth runs before routing, so all under /ui/ is public to GET.
    assert routes.is_public("GET", "/ui/app.js") and routes.is_public("GET", "/ui/../app.py")
    assert routes.is_public("GET", "/ui") and routes.is_public("GET", "/ui/")
    assert not routes.is_public("POST", "/ui/") and not routes.is_public("GET", "/uix")
    assert routes.dialect_of_path("/ui/app.js").name == "llamacpp"


def test_anthropics_routes_answer_a_full_queue_with_its_overloaded_529_and_openais_with_503(routes):
    full = GatewayError(ErrorKind.UNAVAILABLE, "the queue is full", retry_after_s=1)
    for path, status, body in [
        ("/v1/messages", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "the queue is full"}}),
        ("/v1/responses", 503, None),
    ]:
        resp = falcon.asgi.Response()
        render(routes.dialect_of_path(path), resp, full)
        assert resp.status == status and resp.get_header("Retry-After") == "1"
        if body is not None:
            assert orjson.loads(resp.data) == body
