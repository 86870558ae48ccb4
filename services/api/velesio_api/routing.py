"""The API's routes, each declared once with the dialect it speaks and whether it needs a token.

Every route module (``routes/<dialect>.py``) declares its :class:`Dialect`, or speaks another
module's (OpenAI's responses and images speak ``openai.DIALECT``), and registers its routes in an
``add_routes(routes, ...)`` function::

    DIALECT = Dialect("openai", encode.error_body)

    def add_routes(routes: Routes, relay: Relay) -> None:
        api = routes.speaking(DIALECT, under="/v1/")
        api.add("/v1/models", Models(relay), public=True)
        api.add("/v1/chat/completions", ChatCompletions(relay))

A new dialect's module is added to ``app.add_routes``; nothing else lists paths or dialects.
What the routes declared tells:

- the auth middleware which paths are public (:meth:`Routes.is_public`);
- the error handlers which dialect an error is rendered in, and the metrics which dialect label a
  request gets (:meth:`Routes.dialect_of`). A path no route matches (a 404, or a request refused
  before routing) speaks the dialect of the longest route path or ``under=`` prefix it starts
  with: ``/api/options/x`` is taken for A1111's ``/api/options``, ``/api/x`` for Ollama's.

A route module adds a route with ``api.add(path, resource)``; a resource is a Falcon resource
whose ``on_get``/``on_post`` only parse the request, decode it into a job
(``velesio_core.dialects.<name>.decode``), relay the job (:class:`~velesio_api.relay.Relay`) and
encode the answer (``velesio_core.dialects.<name>.encode``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import falcon.asgi
from falcon.routing import CompiledRouter

from velesio_core.errors import GatewayError

#: The API's Falcon app, with Falcon's own request and response types.
App = falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]
#: Whether a route needs no token: False, True (for every method), or the methods that need none.
Public = bool | tuple[str, ...]
#: Marks a public key of Routes._public as a path prefix rather than a whole path.
_PREFIX = "prefix:"


@dataclass(frozen=True)
class Dialect:
    """An API dialect as the HTTP layer sees it: how its errors look, and its metrics label."""

    #: The ``dialect`` label of the API's metrics.
    name: str
    #: The JSON body of an error, in the shape the dialect's clients parse.
    error_body: Callable[[GatewayError], bytes]
    #: The ``WWW-Authenticate`` header of a 401, where the dialect's clients expect one.
    auth_challenge: str | None = None
    #: An error's HTTP status, where the dialect's clients expect another than velesio's own.
    error_status: Callable[[GatewayError], int] | None = None


@dataclass(frozen=True)
class Route:
    """One declared route, as the compatibility tables and the differential tests list them."""

    path: str
    dialect: str
    methods: tuple[str, ...]
    public: bool


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")


class Routes:
    """The routes of one app: Falcon routes them, this remembers what each declared."""

    def __init__(self, app: App, router: CompiledRouter) -> None:
        self._app = app
        self._router = router
        self._dialects: dict[str, Dialect] = {}
        #: Public path (or, for a templated route, path prefix) -> the methods public there (None: all).
        self._public: dict[str, frozenset[str] | None] = {}
        self._methods: dict[str, tuple[str, ...]] = {}
        #: (path prefix, dialect), longest first: the dialect of the paths no route matches.
        self._prefixes: list[tuple[str, Dialect]] = []

    def speaking(self, dialect: Dialect, *, under: str | None = None) -> DialectRoutes:
        """Routes that speak ``dialect``; with ``under``, so do the unknown paths under that prefix."""
        if under is not None:
            self._claim(under, dialect)
        return DialectRoutes(self, dialect)

    def _claim(self, prefix: str, dialect: Dialect) -> None:
        for claimed, claimant in self._prefixes:
            if claimed == prefix:
                if claimant != dialect:
                    raise ValueError(f"both {claimant.name} and {dialect.name} claim {prefix!r}")
                return
        self._prefixes.append((prefix, dialect))
        self._prefixes.sort(key=lambda claim: -len(claim[0]))

    def add(self, path: str, resource: object, *, dialect: Dialect, public: Public = False) -> None:
        self._app.add_route(path, resource)
        self._dialects[path] = dialect
        self._methods[path] = tuple(method for method in _METHODS if hasattr(resource, f"on_{method.lower()}"))
        if "{" not in path:
            self._claim(path, dialect)
        if public:
            # Auth runs before routing: a templated route makes every path under its fixed part
            # public (for the methods given), whether or not the route then matches it.
            key = path if "{" not in path else _PREFIX + path[: path.index("{")]
            self._public[key] = None if isinstance(public, bool) else frozenset(public)

    @property
    def request_options(self) -> falcon.RequestOptions:
        """How the app parses request bodies, for a route that needs other limits than Falcon's."""
        return self._app.req_options

    def table(self) -> list[Route]:
        """Every route declared, in the order declared."""
        return [
            Route(path, dialect.name, self._methods[path], self._declared_public(path))
            for path, dialect in self._dialects.items()
        ]

    def _declared_public(self, path: str) -> bool:
        return (path if "{" not in path else _PREFIX + path[: path.index("{")]) in self._public

    @property
    def public_paths(self) -> frozenset[str]:
        """The public fixed paths, and ``prefix*`` for the prefixes public under a templated route."""
        return frozenset(key.removeprefix(_PREFIX) + "*" if key.startswith(_PREFIX) else key for key in self._public)

    def is_public(self, method: str, path: str) -> bool:
        """CORS preflights and the routes declared public need no token."""
        if method == "OPTIONS":
            return True
        for key, methods in self._public.items():
            public = path.startswith(key.removeprefix(_PREFIX)) if key.startswith(_PREFIX) else path == key
            if public and (methods is None or method in methods):
                return True
        return False

    def dialect_of(self, req: falcon.asgi.Request) -> Dialect:
        """The dialect of the route a request is for, before or after Falcon routed it."""
        return self.dialect_of_path(req.path, req.uri_template)

    def dialect_of_path(self, path: str, template: str | None = None) -> Dialect:
        """The dialect of the route ``path`` matches (``template``: that route, where known), else
        of the longest route path or ``under=`` prefix that ``path`` starts with."""
        if template is None:
            found = self._router.find(path)
            template = found[3] if found is not None else None
        dialect = self._dialects.get(template) if template is not None else None
        if dialect is not None:
            return dialect
        for prefix, claimant in self._prefixes:
            if path.startswith(prefix):
                return claimant
        raise LookupError(f"no dialect claims {path!r}; one route module must claim under='/'")


class DialectRoutes:
    """The routes of one dialect: what a route module adds its routes to."""

    def __init__(self, routes: Routes, dialect: Dialect) -> None:
        self._routes = routes
        self.dialect = dialect

    def add(self, path: str, resource: object, *, public: Public = False) -> None:
        """Route ``path`` to ``resource``; ``public``: no token needed (True: for every method, or
        for the methods named)."""
        self._routes.add(path, resource, dialect=self.dialect, public=public)
