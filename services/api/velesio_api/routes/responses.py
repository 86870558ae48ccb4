"""OpenAI's Responses API (/v1/responses), on whichever backend the workers run.

A response continues another (``previous_response_id``) by replaying the stored conversation
before the new input; what a request stores, and who may read it, is stored_responses.py's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi

from velesio_core.auth import credential_from_headers
from velesio_core.dialects.responses import decode, encode
from velesio_core.dialects.responses.schemas import InputTokensRequest, ResponsesRequest
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.jobs import JobKind
from velesio_core.stored_responses import ResponseStore, owner_of
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Routes
from . import openai

SSE = "text/event-stream"


def _owner(req: falcon.asgi.Request) -> str:
    return owner_of(credential_from_headers(req.get_header("Authorization"), req.get_header("X-Api-Key")))


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(
        ErrorKind.NOT_FOUND, f"Response with id '{response_id}' not found.", extra={"param": "response_id"}
    )


async def _history(store: ResponseStore, owner: str, previous: str | None) -> list[dict[str, Any]]:
    if previous is None:
        return []
    record = await store.get(owner, previous)
    if record is None:
        raise GatewayError(
            ErrorKind.NOT_FOUND,
            f"Previous response with id '{previous}' not found.",
            extra={"param": "previous_response_id"},
        )
    messages: list[dict[str, Any]] = record["messages"]
    return messages


class Responses:
    def __init__(self, relay: Relay, store: ResponseStore) -> None:
        self._relay = relay
        self._store = store

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(ResponsesRequest, await self._relay.read_json(req))
        owner = _owner(req)
        history = await _history(self._store, owner, request.previous_response_id)
        model = await self._relay.model(request.model)
        job = self._relay.job(JobKind.CHAT, decode.chat_payload(request, history), model, stream=bool(request.stream))
        asked = request.model_dump(exclude_unset=True, by_alias=True)
        head = encode.head(asked, id=f"resp_{job.id}", model=model.id, created_at=int(time.time()))
        conversation = decode.stored_messages(request, history)

        async def keep(response: dict[str, Any]) -> None:
            if conversation is not None:
                messages = conversation + encode.output_messages(response)
                await self._store.put(owner, response["id"], {"response": response, "messages": messages})

        if not job.stream:
            response = encode.response(await self._relay.result(req, job), head)
            await keep(response)
            send_json(resp, response)
            return
        events = encode.ResponseEvents(head)
        await self._relay.stream(req, resp, job, events, SSE)
        chunks = resp.stream
        assert isinstance(chunks, AsyncIterator)  # what Relay.stream sets
        resp.stream = _then(chunks, events, keep)


async def _then(
    chunks: AsyncIterator[bytes], events: encode.ResponseEvents, keep: Callable[[dict[str, Any]], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """The stream, then the finished response stored (once the client has it all)."""
    async for chunk in chunks:
        yield chunk
    if events.final is not None:
        await keep(events.final)


class StoredResponse:
    def __init__(self, store: ResponseStore) -> None:
        self._store = store

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        record = await self._store.get(_owner(req), response_id)
        if record is None:
            raise _not_found(response_id)
        send_json(resp, record["response"])

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        if not await self._store.delete(_owner(req), response_id):
            raise _not_found(response_id)
        send_json(resp, encode.deleted(response_id))


class InputTokens:
    """The prompt the model would see, rendered by its own template with the tools, then tokenized."""

    def __init__(self, relay: Relay, store: ResponseStore) -> None:
        self._relay = relay
        self._store = store

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(InputTokensRequest, await self._relay.read_json(req))
        history = await _history(self._store, _owner(req), request.previous_response_id)
        model = await self._relay.model(request.model)
        conversation = decode.conversation_payload(request, history)
        send_json(resp, encode.input_tokens(await self._relay.prompt_tokens(req, conversation, model)))


def add_routes(routes: Routes, relay: Relay, store: ResponseStore) -> None:
    # OpenAI's API: its errors, and its dialect label in the metrics.
    api = routes.speaking(openai.DIALECT)
    api.add("/v1/responses", Responses(relay, store))
    api.add("/v1/responses/input_tokens", InputTokens(relay, store))
    api.add("/v1/responses/{response_id}", StoredResponse(store))
