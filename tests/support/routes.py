"""The API's route table as the app declares it, without starting the API."""

from __future__ import annotations

import falcon.asgi
import redis.asyncio as aioredis
from falcon.routing import CompiledRouter

from velesio_api import console
from velesio_api.app import add_routes
from velesio_api.relay import Relay
from velesio_api.routes import admin
from velesio_api.routing import Route, Routes
from velesio_core.settings import Settings
from velesio_core.stored_responses import MemoryResponseStore
from velesio_core.tenants.config import TenantSettings


def declared_routes() -> Routes:
    """Every route ``create_app`` can declare: the dialects', the admin API's and the console's,
    the console's live views included (they are declared only with a queue on Redis)."""
    router = CompiledRouter()
    routes = Routes(falcon.asgi.App(router=router), router)
    # The resources only keep what they are given until a request comes; none comes here.
    relay = Relay(queue=None, models=None, settings=Settings.from_env({}))  # type: ignore[arg-type]
    add_routes(routes, relay, board=None, stored_responses=MemoryResponseStore())  # type: ignore[arg-type]
    admin.add_routes(routes, relay, None, TenantSettings(server_secret=None, mint_max_ttl_s=0, lease_ttl_s=30))
    # A client connects on its first command; none is sent here.
    console.add_routes(routes, redis=aioredis.Redis())
    return routes


def route_table() -> list[Route]:
    return declared_routes().table()
