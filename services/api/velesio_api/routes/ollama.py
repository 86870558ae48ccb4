"""Ollama's API (/api/*, GET /), on whichever backend the workers run."""

from __future__ import annotations

import falcon
import falcon.asgi

from velesio_core.backends.base import ModelInfo
from velesio_core.dialects.clock import Instant
from velesio_core.dialects.ollama import decode, encode
from velesio_core.dialects.ollama.schemas import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    ShowRequest,
)
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.jobs import Job, JobKind
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Dialect, Routes
from . import llamacpp

DIALECT = Dialect("ollama", encode.error_body)

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
        send_json(resp, encode.show(await self._relay.model(decode.shown_model(request))))


class Generate:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        started = Instant.now()
        request = parse(GenerateRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        if not request.prompt:
            unloaded = decode.unloads(request.keep_alive)
            send_json(resp, encode.loaded(request.model, unloaded=unloaded, chat=False, now=Instant.now()))
            return
        decode.check(request, model)
        route = decode.generate_route(request)
        context: list[int] | None = None
        if route is decode.GenerateRoute.TOKENS:
            context = await self._prompt_tokens(req, request, model)
            route = decode.GenerateRoute.RAW if context is not None else decode.GenerateRoute.CHAT
        if route is decode.GenerateRoute.CHAT:
            kind, payload = JobKind.CHAT, decode.chat_payload(request)
        else:
            prompt: str | list[int] = context if context is not None else (request.prompt or "")
            kind, payload = JobKind.COMPLETION, decode.completion_payload(request, prompt)
        stream = request.stream is not False
        job = self._relay.job(kind, payload, model, stream=stream)
        try:
            await self._answer(req, resp, request, started, job, context)
        except GatewayError as error:
            if error.kind is not ErrorKind.EXCEED_CONTEXT_SIZE or request.truncate is False or kind is JobKind.CHAT:
                raise
            # Ollama cuts a prompt over the context (truncate: true, its default); nothing was
            # sent yet, so the completion runs again on what fits.
            tokens = context if context is not None else await self._raw_tokens(req, request, model)
            kept = decode.truncated_prompt(tokens, n_ctx=model.n_ctx, options=request.options)
            job = self._relay.job(JobKind.COMPLETION, decode.completion_payload(request, kept), model, stream=stream)
            await self._answer(req, resp, request, started, job, kept if context is not None else None)

    async def _answer(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, request: GenerateRequest, started: Instant,
        job: Job, context: list[int] | None,
    ) -> None:  # fmt: skip
        top_logprobs = decode.top_logprobs(request)
        await self._relay.respond(
            req,
            resp,
            job,
            content_type=NDJSON,
            chunks=encode.GenerateLines(
                model=request.model, started=started, clock=Instant.now, context=context, top_logprobs=top_logprobs
            ),
            whole=lambda result: encode.generate_response(
                result,
                model=request.model,
                started=started,
                now=Instant.now(),
                context=context,
                top_logprobs=top_logprobs,
            ),
        )

    async def _raw_tokens(self, req: falcon.asgi.Request, request: GenerateRequest, model: ModelInfo) -> list[int]:
        """A raw prompt's tokens, after its ``context``, as llama-server reads them."""
        job = self._relay.job(JobKind.TOKENIZE, decode.tokenize_payload(request, request.prompt or ""), model)
        tokens: list[int] = (await self._relay.result(req, job))["tokens"]
        return [*(request.context or ()), *tokens]

    async def _prompt_tokens(
        self, req: falcon.asgi.Request, request: GenerateRequest, model: ModelInfo
    ) -> list[int] | None:
        """The tokens a templated prompt continues the ``context`` with, all of them: rendered
        with the request's template or the model's, then tokenized by the model.

        None where the worker can neither render nor tokenize (the Ollama backend): the
        generation is then a one-message chat, and answers no ``context``.
        """
        try:
            prompt = decode.own_template_prompt(request)
            if prompt is None:
                job = self._relay.job(JobKind.APPLY_TEMPLATE, decode.template_payload(request), model)
                prompt = (await self._relay.result(req, job))["prompt"]
            job = self._relay.job(JobKind.TOKENIZE, decode.tokenize_payload(request, prompt), model)
            tokens: list[int] = (await self._relay.result(req, job))["tokens"]
        except GatewayError as error:
            if error.kind is not ErrorKind.NOT_SUPPORTED or request.context or request.template:
                raise
            return None
        return [*(request.context or ()), *tokens]


class Chat:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        started = Instant.now()
        request = parse(ChatRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        if not request.messages:
            unloaded = decode.unloads(request.keep_alive)
            send_json(resp, encode.loaded(request.model, unloaded=unloaded, chat=True, now=Instant.now()))
            return
        decode.check(request, model)
        try:
            await self._answer(req, resp, request, model, started)
        except GatewayError as error:
            if error.kind is not ErrorKind.EXCEED_CONTEXT_SIZE or request.truncate is False:
                raise
            # Ollama drops the oldest turns of a chat that overflows the context (truncate:
            # true, its default); nothing was sent yet, so the chat runs again on what fits.
            await self._answer(req, resp, await self._fitting(req, request, model, error), model, started)

    async def _answer(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, request: ChatRequest, model: ModelInfo,
        started: Instant,
    ) -> None:  # fmt: skip
        top_logprobs = decode.top_logprobs(request)
        job = self._relay.job(JobKind.CHAT, decode.chat_payload(request), model, stream=request.stream is not False)
        await self._relay.respond(
            req,
            resp,
            job,
            content_type=NDJSON,
            chunks=encode.ChatLines(model=request.model, started=started, clock=Instant.now, top_logprobs=top_logprobs),
            whole=lambda result: encode.chat_response(
                result, model=request.model, started=started, now=Instant.now(), top_logprobs=top_logprobs
            ),
        )

    async def _fitting(
        self, req: falcon.asgi.Request, request: ChatRequest, model: ModelInfo, overflow: GatewayError
    ) -> ChatRequest:
        """The chat from the earliest message on which, with the system messages before it,
        fits the model's context: a binary search, two small jobs (template, tokenize) a step."""

        async def fits(start: int) -> bool:
            conversation = decode.conversation_payload(decode.truncated(request, start))
            return len((await self._relay.prompt_tokens(req, conversation, model))["tokens"]) < model.n_ctx

        last = len(request.messages or ()) - 1
        if last < 1 or not await fits(last):
            raise overflow  # even the last message alone is too long: Ollama's runner errs too
        low, high = 1, last
        while low < high:
            middle = (low + high) // 2
            if await fits(middle):
                high = middle
            else:
                low = middle + 1
        return decode.truncated(request, low)


class Embed:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        started = Instant.now()
        request = parse(EmbedRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        job = self._relay.job(JobKind.EMBEDDINGS, decode.embed_payload(request), model)
        result = await self._relay.result(req, job)
        send_json(resp, encode.embed_response(result, model=request.model, started=started, now=Instant.now()))


class LegacyEmbeddings:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(EmbeddingsRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        job = self._relay.job(JobKind.EMBEDDINGS, decode.legacy_embeddings_payload(request), model)
        send_json(resp, encode.legacy_embedding(await self._relay.result(req, job)))


def add_routes(routes: Routes, relay: Relay) -> None:
    api = routes.speaking(DIALECT, under="/api/")
    # Ollama's liveness probe; the path is llama.cpp's too, and so are its errors (a POST's 405).
    routes.speaking(llamacpp.DIALECT).add("/", Root(), public=True)
    api.add("/api/version", Version())
    # Public, as the model lists are on llama.cpp's server (see openai.py's /v1/models).
    api.add("/api/tags", Tags(relay), public=True)
    api.add("/api/ps", Running(relay))
    api.add("/api/show", Show(relay))
    api.add("/api/generate", Generate(relay))
    api.add("/api/chat", Chat(relay))
    api.add("/api/embed", Embed(relay))
    api.add("/api/embeddings", LegacyEmbeddings(relay))
