"""The API's route table as the route modules declare it, without starting the API."""

from __future__ import annotations

import falcon.asgi
from falcon.routing import CompiledRouter

from velesio_api.app import add_routes
from velesio_api.relay import Relay
from velesio_api.routing import Route, Routes


def declared_routes() -> Routes:
    router = CompiledRouter()
    routes = Routes(falcon.asgi.App(router=router), router)
    # The resources only keep what they are given until a request comes; none comes here.
    add_routes(routes, Relay(queue=None, models=None, settings=None), board=None)  # type: ignore[arg-type]
    return routes


def route_table() -> list[Route]:
    return declared_routes().table()
