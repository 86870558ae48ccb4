"""Ollama's API (/api/*, GET /), on whichever backend the workers run."""

from __future__ import annotations

import time

import falcon
import falcon.asgi

from velesio_core.dialects.ollama import encode
from velesio_core.dialects.ollama.decode import chat_payload, completion_payload, embed_payload
from velesio_core.dialects.ollama.schemas import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    ShowRequest,
)
from velesio_core.errors import invalid_request
from velesio_core.jobs import JobKind
from velesio_core.validation import parse

from ..relay import Relay, send_json

NDJSON = "application/x-ndjson"


class Root:
    """The liveness probe Ollama's clients and tools use."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = encode.RUNNING

    on_head = on_get


class Version:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, {"version": encode.API_VERSION})

    on_head = on_get


class Tags:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.tags(await self._relay.models.models()))

    on_head = on_get


class Running:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.running(await self._relay.models.models()))


class Show:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(ShowRequest, await self._relay.read_json(req))
        name = request.model or request.name
        if not name:
            raise invalid_request("model: name the model to show")
        send_json(resp, encode.show(await self._relay.model(name)))


def _loaded(model: str, keep_alive: object, *, chat: bool) -> dict:
    """Ollama's answer to a request with nothing to generate: the model is (un)loaded."""
    reason = "unload" if keep_alive in (0, "0", "0s") else "load"
    answer = {"model": model, "created_at": encode.now_rfc3339()}
    answer |= {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
    return {**answer, "done": True, "done_reason": reason}


class Generate:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        started = time.monotonic()
        request = parse(GenerateRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        if not request.prompt:
            send_json(resp, _loaded(request.model, request.keep_alive, chat=False))
            return
        if request.raw:
            kind, payload = JobKind.COMPLETION, completion_payload(request)
        else:
            kind, payload = JobKind.CHAT, chat_payload(request)
        job = self._relay.job(kind, payload, model, stream=request.stream is not False)
        await self._relay.respond(
            req, resp, job, content_type=NDJSON,
            chunks=encode.GenerateLines(model=request.model, started=started),
            whole=lambda result: encode.generate_response(result, model=request.model, started=started),
        )  # fmt: skip


class Chat:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        started = time.monotonic()
        request = parse(ChatRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        if not request.messages:
            send_json(resp, _loaded(request.model, request.keep_alive, chat=True))
            return
        job = self._relay.job(JobKind.CHAT, chat_payload(request), model, stream=request.stream is not False)
        await self._relay.respond(
            req, resp, job, content_type=NDJSON,
            chunks=encode.ChatLines(model=request.model, started=started),
            whole=lambda result: encode.chat_response(result, model=request.model, started=started),
        )  # fmt: skip


class Embed:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        started = time.monotonic()
        request = parse(EmbedRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        result = await self._relay.result(req, self._relay.job(JobKind.EMBEDDINGS, embed_payload(request), model))
        send_json(resp, encode.embed_response(result, model=request.model, started=started))


class LegacyEmbeddings:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(EmbeddingsRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        result = await self._relay.result(req, self._relay.job(JobKind.EMBEDDINGS, {"input": request.prompt}, model))
        send_json(resp, encode.legacy_embedding(result))


def add_routes(app: falcon.asgi.App, relay: Relay) -> None:
    app.add_route("/", Root())
    app.add_route("/api/version", Version())
    app.add_route("/api/tags", Tags(relay))
    app.add_route("/api/ps", Running(relay))
    app.add_route("/api/show", Show(relay))
    app.add_route("/api/generate", Generate(relay))
    app.add_route("/api/chat", Chat(relay))
    app.add_route("/api/embed", Embed(relay))
    app.add_route("/api/embeddings", LegacyEmbeddings(relay))
