"""llama.cpp's native API, as LLM for Unity v2 and v3 call it (docs/clients.md, LLM for Unity and llama.cpp)."""

from __future__ import annotations

import asyncio
from typing import Any

import falcon
import falcon.asgi
import orjson
from pydantic import BaseModel

from velesio_core.backends.base import ModelInfo
from velesio_core.dialects.llamacpp import decode, encode
from velesio_core.dialects.llamacpp.schemas import (
    ApplyTemplateRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingsRequest,
    TokenizeRequest,
)
from velesio_core.errors import invalid_request, not_supported
from velesio_core.jobs import JobKind
from velesio_core.validation import parse

from ..relay import Relay, send_json, send_json_bytes
from ..routing import Dialect, Routes
from . import openai

#: llama.cpp's native API (and LLM for Unity's) owns every path no other dialect claims.
DIALECT = Dialect("llamacpp", encode.error_body)

SSE = "text/event-stream"


class Health:
    """GET and POST (LlamaLib v2 POSTs): 200 once a worker serves a model, else 503."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._relay.drop_in_model()
        send_json(resp, {"status": "ok"})

    on_post = on_get


class Props:
    """GET and POST (LlamaLib v2 POSTs ``{"stream": false}`` and reads default_generation_settings.n_ctx)."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.props(await self._relay.drop_in_model()))

    on_post = on_get


class Template:
    """LLM for Unity v2 asks for its template's name before every chat."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, encode.template(await self._relay.drop_in_model()))

    on_get = on_post


class Completion:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        request = parse(CompletionRequest, body)
        model = await self._relay.drop_in_model(decode.model_name(body))
        payload, prompts = decode.forwarded(request), decode.prompts(request.prompt)
        if len(prompts) > 1:
            await self._several(req, resp, payload, prompts, model, stream=bool(request.stream))
            return
        job = self._relay.job(JobKind.COMPLETION, {**payload, "prompt": prompts[0]}, model, stream=bool(request.stream))
        if job.stream:
            await self._relay.stream(req, resp, job, encode.SseStream(), SSE)
        else:
            # The backend's final object, byte for byte.
            send_json_bytes(resp, (await self._relay.result_event(req, job)).data)

    async def _several(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        payload: dict[str, Any],
        prompts: list[Any],
        model: ModelInfo,
        *,
        stream: bool,
    ) -> None:
        """Several prompts: one job each, answered as llama-server answers them, an array in order."""
        if stream:
            raise not_supported("several prompts are not supported with stream: true; send one request per prompt")
        jobs = [self._relay.job(JobKind.COMPLETION, {**payload, "prompt": one}, model) for one in prompts]
        events = await asyncio.gather(*(self._relay.result_event(req, job) for job in jobs))
        send_json(resp, [{**orjson.loads(event.data), "index": index} for index, event in enumerate(events)])


class Forward:
    """A request that goes to a worker as it is and comes back as llama-server answers it."""

    def __init__(self, relay: Relay, kind: JobKind, schema: type[BaseModel]) -> None:
        self._relay = relay
        self._kind = kind
        self._schema = schema

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        request = parse(self._schema, body)
        model = await self._relay.drop_in_model(decode.model_name(body))
        job = self._relay.job(self._kind, decode.forwarded(request), model)
        send_json(resp, await self._relay.result(req, job))


class Embeddings:
    """POST /embeddings: LLM for Unity v3 reads llama.cpp's array, v2's JsonUtility an object."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        request = parse(EmbeddingsRequest, body)
        model = await self._relay.drop_in_model(decode.model_name(body))
        job = self._relay.job(JobKind.EMBEDDINGS, decode.forwarded(request), model)
        result = await self._relay.result(req, job)
        send_json(resp, encode.embeddings(result, llmunity_v2=decode.speaks_llmunity_v2(body)))


class LlamaEndpoint:
    """One of llama-server's endpoints velesio adds nothing to: the body goes to it as it is, its
    answer (or its error, with its status) comes back as it is."""

    def __init__(self, relay: Relay, endpoint: str) -> None:
        self._relay = relay
        self._endpoint = endpoint

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await self._relay.read_json(req)
        if not isinstance(body, dict):
            raise invalid_request("the request body must be a JSON object")
        payload = {"endpoint": self._endpoint, "body": body}
        job = self._relay.job(JobKind.LLAMA_ENDPOINT, payload, await self._relay.drop_in_model(decode.model_name(body)))
        send_json(resp, await self._relay.result(req, job))


class Slots:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        slots = await self._relay.result(req, self._relay.job(JobKind.SLOTS, {}, await self._relay.drop_in_model()))
        send_json(resp, encode.slots(slots, fail_on_no_slot=bool(req.get_param_as_bool("fail_on_no_slot"))))


def add_routes(routes: Routes, relay: Relay) -> None:
    api = routes.speaking(DIALECT, under="/")
    health = Health(relay)
    api.add("/health", health, public=True)
    # Its path is under /v1/, whose errors (a 503 before a model is served) have always been OpenAI's.
    routes.speaking(openai.DIALECT).add("/v1/health", health, public=True)
    api.add("/props", Props(relay))
    api.add("/template", Template(relay))
    for path in ("/completion", "/completions"):
        api.add(path, Completion(relay))
    api.add("/tokenize", Forward(relay, JobKind.TOKENIZE, TokenizeRequest))
    api.add("/detokenize", Forward(relay, JobKind.DETOKENIZE, DetokenizeRequest))
    api.add("/apply-template", Forward(relay, JobKind.APPLY_TEMPLATE, ApplyTemplateRequest))
    for path in ("/embeddings", "/embedding"):
        api.add(path, Embeddings(relay))
    api.add("/slots", Slots(relay))
    # Served by llama-server alone: velesio relays them (JobKind.LLAMA_ENDPOINT), under every path
    # llama-server answers them on. /infill needs a model with fill-in-the-middle tokens, /rerank a
    # reranker started with --reranking; otherwise llama-server's own 501 says so.
    openai_api = routes.speaking(openai.DIALECT)
    api.add("/infill", LlamaEndpoint(relay, "/infill"))
    rerank = LlamaEndpoint(relay, "/rerank")
    for path in ("/rerank", "/reranking"):
        api.add(path, rerank)
        openai_api.add("/v1" + path, rerank)
    input_tokens = LlamaEndpoint(relay, "/v1/chat/completions/input_tokens")
    openai_api.add("/chat/completions/input_tokens", input_tokens)
    openai_api.add("/v1/chat/completions/input_tokens", input_tokens)
