"""Anthropic's Messages API (/v1/messages), on whichever backend the workers run."""

from __future__ import annotations

import falcon
import falcon.asgi

from velesio_core.dialects.anthropic import encode
from velesio_core.dialects.anthropic.decode import chat_payload, conversation_payload
from velesio_core.dialects.anthropic.schemas import CountTokensRequest, MessagesRequest
from velesio_core.jobs import JobKind
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Dialect, Routes

#: Anthropic's clients read some errors by other statuses than velesio's own (a 529 when busy).
DIALECT = Dialect("anthropic", encode.error_body, error_status=encode.error_status)

SSE = "text/event-stream"


class Messages:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(MessagesRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        job = self._relay.job(JobKind.CHAT, chat_payload(request), model, stream=bool(request.stream))
        answer = {"id": f"msg_{job.id}", "model": model.id}
        await self._relay.respond(
            req,
            resp,
            job,
            content_type=SSE,
            chunks=encode.MessageEvents(**answer),
            whole=lambda result: encode.message(result, **answer),
        )


class CountTokens:
    """The prompt the model would see, rendered by its own template with the tools, then tokenized."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request = parse(CountTokensRequest, await self._relay.read_json(req))
        model = await self._relay.model(request.model)
        send_json(resp, encode.token_count(await self._relay.prompt_tokens(req, conversation_payload(request), model)))


def add_routes(routes: Routes, relay: Relay) -> None:
    api = routes.speaking(DIALECT, under="/v1/messages")
    api.add("/v1/messages", Messages(relay))
    api.add("/v1/messages/count_tokens", CountTokens(relay))
