"""OpenAI's API (/v1/*), on whichever backend the workers run."""

from __future__ import annotations

import asyncio
import time

import falcon
import falcon.asgi

from velesio_core.dialects.openai import encode
from velesio_core.dialects.openai.decode import chat_payload, choices, completion_payloads, embeddings_payload
from velesio_core.dialects.openai.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from velesio_core.jobs import JobKind
from velesio_core.registry import find_model
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Dialect, Routes

DIALECT = Dialect("openai", encode.error_body)

SSE = "text/event-stream"


class Models:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.model_list(await self._relay.models.models(), int(time.time())))


class Model:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str) -> None:
        found = find_model(await self._relay.models.models(), model)
        send_json(resp, encode.model(found, int(time.time())))


class ChatCompletions:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(ChatCompletionRequest, await self._relay.read_json(req))
        model = await self._relay.drop_in_model(request.model)
        payload, n = chat_payload(request), choices(request)
        jobs = [self._relay.job(JobKind.CHAT, payload, model, stream=bool(request.stream)) for _ in range(n)]
        answer: encode.AnswerHead = {"id": f"chatcmpl-{jobs[0].id}", "model": model.id, "created": int(time.time())}
        if n > 1 and request.stream:
            chunks = encode.ChatChunks(**answer, include_usage=request.include_usage, choices=n)
            await self._relay.stream_choices(req, resp, jobs, chunks, SSE)
            return
        if n > 1:
            results = await asyncio.gather(*(self._relay.result(req, job) for job in jobs))
            send_json(resp, encode.several_choices([encode.chat_completion(one, **answer) for one in results]))
            return
        await self._relay.respond(
            req,
            resp,
            jobs[0],
            content_type=SSE,
            chunks=encode.ChatChunks(**answer, include_usage=request.include_usage),
            whole=lambda result: encode.chat_completion(result, **answer),
        )


class Completions:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(CompletionRequest, await self._relay.read_json(req))
        model = await self._relay.drop_in_model(request.model)
        stream = bool(request.stream)
        n = choices(request)
        jobs = [
            self._relay.job(JobKind.COMPLETION, payload, model, stream=stream)
            for payload in completion_payloads(request)
            for _ in range(n)
        ]
        answer: encode.AnswerHead = {"id": f"cmpl-{jobs[0].id}", "model": model.id, "created": int(time.time())}
        if len(jobs) > 1 and stream:
            chunks = encode.CompletionChunks(**answer, include_usage=request.include_usage, choices=len(jobs))
            await self._relay.stream_choices(req, resp, jobs, chunks, SSE)
            return
        if len(jobs) > 1:
            results = await asyncio.gather(*(self._relay.result(req, job) for job in jobs))
            send_json(resp, encode.several_choices([encode.text_completion(one, **answer) for one in results]))
            return
        await self._relay.respond(
            req,
            resp,
            jobs[0],
            content_type=SSE,
            chunks=encode.CompletionChunks(**answer, include_usage=request.include_usage),
            whole=lambda result: encode.text_completion(result, **answer),
        )


class Embeddings:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(EmbeddingsRequest, await self._relay.read_json(req))
        model = await self._relay.drop_in_model(request.model)
        result = await self._relay.result(req, self._relay.job(JobKind.EMBEDDINGS, embeddings_payload(request), model))
        # The name the client sent, as llama-server and OpenAI echo it.
        named = request.model or model.id
        send_json(resp, encode.embeddings(result, model=named, encoding_format=request.encoding_format))


def add_routes(routes: Routes, relay: Relay) -> None:
    api = routes.speaking(DIALECT, under="/v1/")
    # Public as llama-server's model list is. One model's entry needs a token: public paths are
    # fixed paths only, and /v1/models/{model} never was one.
    api.add("/v1/models", Models(relay), public=True)
    api.add("/v1/models/{model}", Model(relay))
    api.add("/v1/chat/completions", ChatCompletions(relay))
    api.add("/v1/completions", Completions(relay))
    api.add("/v1/embeddings", Embeddings(relay))
    # llama-server serves these without /v1 too, so an OpenAI SDK whose base_url has no /v1 works
    # against it. /completions and /embeddings without /v1 are llama.cpp's native routes there.
    api.add("/models", Models(relay), public=True)
    api.add("/chat/completions", ChatCompletions(relay))
