"""Build the ASGI application."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import falcon.asgi
from falcon.routing import CompiledRouter
from prometheus_client.core import Metric

from velesio_core.auth import TokenSet
from velesio_core.image_board import ImageBoard, RedisImageBoard
from velesio_core.logs import configure_logging
from velesio_core.metrics.queue_state import queue_families
from velesio_core.queue.interface import JobQueue
from velesio_core.queue.redis_queue import RedisJobQueue
from velesio_core.registry import CachedModelDirectory, ModelDirectory, WorkerRegistry
from velesio_core.settings import Settings, SettingsError, exit_with, load_or_exit
from velesio_core.stored_responses import MemoryResponseStore, RedisResponseStore, ResponseStore
from velesio_core.tenants.admission import Admission
from velesio_core.tenants.authn import Authenticator
from velesio_core.tenants.config import TenantSettings
from velesio_core.tenants.store import KeyStore

from . import console, errors
from .disconnect import DisconnectAware
from .forwarded import ForwardedClient
from .metrics import MetricsResource, RequestMetrics, ScrapeState
from .middleware import CloseQueue, Cors
from .relay import Relay
from .routes import a1111, admin, anthropic, images, llamacpp, ollama, openai, responses
from .routing import Routes
from .tenancy import AdmittingQueue, AfterResponse, KeyAuth


async def _nothing_more() -> list[Metric]:
    return []


def add_routes(routes: Routes, relay: Relay, board: ImageBoard, stored_responses: ResponseStore) -> None:
    """Every dialect's routes (each module declares its paths, which are public, and its dialect)."""
    for dialect in (llamacpp, openai, anthropic, ollama):
        dialect.add_routes(routes, relay)
    a1111.add_routes(routes, relay, board)
    images.add_routes(routes, relay, board)
    responses.add_routes(routes, relay, stored_responses)


def create_app(
    settings: Settings,
    queue: JobQueue,
    models: ModelDirectory,
    board: ImageBoard,
    *,
    scrape_state: ScrapeState = _nothing_more,
    extra_middleware: Sequence[object] = (),
    stored_responses: ResponseStore | None = None,
    tenants: TenantSettings | None = None,
) -> ForwardedClient:
    """The API over ``queue``. With METRICS on, every request is measured and ``GET /metrics``
    serves the measurements, plus what ``scrape_state`` reads at each scrape. Responses API
    responses are kept in ``stored_responses``, else in this process's memory. With a server
    secret in ``tenants`` and a queue on Redis, stored API keys work besides API_TOKENS."""
    tenants = tenants or TenantSettings(server_secret=None, mint_max_ttl_s=0, lease_ttl_s=30)
    redis = getattr(queue, "redis", None)
    store = admission = None
    if tenants.server_secret is not None and redis is not None:
        store = KeyStore(redis, tenants.server_secret)
        admission = Admission(redis, lease_ttl_s=tenants.lease_ttl_s)
        queue = AdmittingQueue(queue, admission)
    authenticator = Authenticator(TokenSet(settings.api_tokens), store, tenants.server_secret)
    router = CompiledRouter()
    app = falcon.asgi.App(router=router)
    routes = Routes(app, router)
    # Any: Falcon types middleware as a union of protocols; extra_middleware may be any of them.
    middleware: list[Any] = [
        Cors(settings.cors_origins),
        KeyAuth(authenticator, admission, routes),
        CloseQueue(queue),
        *extra_middleware,
    ]
    if settings.metrics:
        middleware.insert(0, RequestMetrics(routes))
    app.add_middleware(middleware)
    errors.install(app, routes)
    relay = Relay(queue, models, settings)
    add_routes(routes, relay, board, stored_responses or MemoryResponseStore())
    admin.add_routes(routes, relay, store, tenants)
    console.add_routes(routes, getattr(queue, "redis", None), store)
    if settings.metrics:
        # Behind the API's tokens like the rest of llama.cpp's API, whose path it is.
        routes.speaking(llamacpp.DIALECT).add("/metrics", MetricsResource(scrape_state))
    return ForwardedClient(DisconnectAware(AfterResponse(app)), settings.forwarded_allow_ips)


def create() -> ForwardedClient:
    """The API over Redis, configured from the environment (what gunicorn's workers load)."""
    configure_logging()
    settings = load_or_exit(require_tokens=True)
    queue = RedisJobQueue.from_settings(settings)
    models = CachedModelDirectory(WorkerRegistry(queue.redis))
    board = RedisImageBoard(queue.redis)
    try:
        tenants = TenantSettings.from_env()
    except SettingsError as error:
        exit_with(error)
    return create_app(
        settings,
        queue,
        models,
        board,
        scrape_state=lambda: queue_families(queue.redis),
        stored_responses=RedisResponseStore(queue.redis),
        tenants=tenants,
    )
