"""llama.cpp's native API, as LLM for Unity v2 and v3 call it (docs/clients.md, LLM for Unity and llama.cpp)."""

from __future__ import annotations

import falcon
import falcon.asgi
from pydantic import BaseModel

from velesio_core.dialects.llamacpp import encode
from velesio_core.dialects.llamacpp.schemas import (
    ApplyTemplateRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingsRequest,
    TokenizeRequest,
)
from velesio_core.errors import unavailable
from velesio_core.jobs import JobKind
from velesio_core.validation import parse

from ..relay import Relay, send_json, send_json_bytes

SSE = "text/event-stream"


def _model_name(body: object) -> str | None:
    # llama.cpp's clients seldom name a model; llama-server's router mode reads it when they do.
    name = body.get("model") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


class Health:
    """GET and POST (LlamaLib v2 POSTs): 200 once a worker serves a model, else 503."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._relay.model()
        send_json(resp, {"status": "ok"})

    on_post = on_get


class Props:
    """GET and POST (LlamaLib v2 POSTs ``{"stream": false}`` and reads default_generation_settings.n_ctx)."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.props(await self._relay.model()))

    on_post = on_get


class Template:
    """LLM for Unity v2 asks for its template's name before every chat."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.template(await self._relay.model()))

    on_get = on_post


class Completion:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        request = parse(CompletionRequest, body)
        model = await self._relay.model(_model_name(body))
        job = self._relay.job(JobKind.COMPLETION, request.forwarded(), model, stream=bool(request.stream))
        if job.stream:
            await self._relay.stream(req, resp, job, encode.SseStream(), SSE)
        else:
            # The backend's final object, byte for byte.
            send_json_bytes(resp, (await self._relay.result_event(req, job)).data)


class Forward:
    """A request that goes to a worker as it is and comes back as llama-server answers it."""

    def __init__(self, relay: Relay, kind: JobKind, schema: type[BaseModel]) -> None:
        self._relay = relay
        self._kind = kind
        self._schema = schema

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        request = parse(self._schema, body)
        job = self._relay.job(self._kind, request.forwarded(), await self._relay.model(_model_name(body)))
        send_json(resp, await self._relay.result(req, job))


class Embeddings:
    """Both LLM for Unity generations POST ``{"content": ...}``; only v3 (LlamaLib) adds ``stream``.

    v3 reads llama.cpp's array, v2's JsonUtility needs an object: the ``stream`` key tells them apart.
    """

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        request = parse(EmbeddingsRequest, body)
        job = self._relay.job(JobKind.EMBEDDINGS, request.forwarded(), await self._relay.model(_model_name(body)))
        result = await self._relay.result(req, job)
        send_json(resp, encode.embeddings(result, llmunity_v2="stream" not in body))


class Slots:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        slots = await self._relay.result(req, self._relay.job(JobKind.SLOTS, {}, await self._relay.model()))
        if req.get_param_as_bool("fail_on_no_slot") and all(slot.get("is_processing") for slot in slots):
            raise unavailable("no slot is available")
        send_json(resp, slots)


def add_routes(app: falcon.asgi.App, relay: Relay) -> None:
    for path in ("/health", "/v1/health"):
        app.add_route(path, Health(relay))
    app.add_route("/props", Props(relay))
    app.add_route("/template", Template(relay))
    for path in ("/completion", "/completions"):
        app.add_route(path, Completion(relay))
    app.add_route("/tokenize", Forward(relay, JobKind.TOKENIZE, TokenizeRequest))
    app.add_route("/detokenize", Forward(relay, JobKind.DETOKENIZE, DetokenizeRequest))
    app.add_route("/apply-template", Forward(relay, JobKind.APPLY_TEMPLATE, ApplyTemplateRequest))
    for path in ("/embeddings", "/embedding"):
        app.add_route(path, Embeddings(relay))
    app.add_route("/slots", Slots(relay))
