"""Build the ASGI application."""

from __future__ import annotations

from collections.abc import Sequence

import falcon.asgi

from velesio_core.auth import TokenSet
from velesio_core.logs import configure_logging
from velesio_core.queue.interface import JobQueue
from velesio_core.queue.redis_queue import RedisJobQueue
from velesio_core.registry import CachedModelDirectory, ModelDirectory, WorkerRegistry
from velesio_core.settings import Settings, load_or_exit

from . import errors
from .disconnect import DisconnectAware
from .middleware import Auth, CloseQueue, Cors
from .relay import Relay
from .routes import llamacpp, ollama, openai


def create_app(
    settings: Settings, queue: JobQueue, models: ModelDirectory, *, extra_middleware: Sequence[object] = ()
) -> DisconnectAware:
    middleware = [Cors(), Auth(TokenSet(settings.api_tokens)), CloseQueue(queue), *extra_middleware]
    app = falcon.asgi.App(middleware=middleware)
    errors.install(app)
    relay = Relay(queue, models, settings)
    for dialect in (llamacpp, openai, ollama):
        dialect.add_routes(app, relay)
    return DisconnectAware(app)


def create() -> DisconnectAware:
    """The API over Redis, configured from the environment (what gunicorn's workers load)."""
    configure_logging()
    settings = load_or_exit(require_tokens=True)
    queue = RedisJobQueue.from_url(settings.redis_url, queue_cap=settings.queue_cap)
    return create_app(settings, queue, CachedModelDirectory(WorkerRegistry(queue.redis)))
