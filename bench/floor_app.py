"""The least an API on velesio's stack can do per request: a Falcon ASGI app on gunicorn's asgi
worker (uvloop), as velesio's API runs, with no velesio code. bench/floor.py serves it and
measures its CPU (``gunicorn bench.floor_app:app -k asgi``).

- ``POST /answer``: parse a JSON body, answer a fixed JSON the size of a whole 8-token answer.
- ``POST /queued``: the same, plus the two Redis round trips any queueing gateway needs: one
  script that queues (an EVALSHA writing a stream entry) and one XREAD that reads an answer.
- ``POST /stream``: 128 server-sent events of one token each, one body write per event.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import falcon
import falcon.asgi
import orjson
import redis.asyncio as aioredis

ANSWER = orjson.dumps({"content": " queen night enemy are this light your your", "stop": True, "tokens_predicted": 8,
                       "tokens_evaluated": 9, "id_slot": 0, "timings": {"predicted_ms": 1.2}})  # fmt: skip
TOKEN_EVENT = b'data: {"content":" word","stop":false,"id_slot":0,"tokens":[]}\n\n'
STREAM_EVENTS = 128
#: Queue one entry on a stream and give its id: the shape of an enqueue script, doing less.
_QUEUE = "return redis.call('xadd', KEYS[1], 'MAXLEN', '1', '*', 'd', ARGV[1])"
_STREAM = "floor:queue"


class Answer:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await req.get_media()
        resp.data = ANSWER
        resp.content_type = falcon.MEDIA_JSON


class Queued:
    def __init__(self) -> None:
        self._redis = aioredis.from_url(os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"))
        self._queue = self._redis.register_script(_QUEUE)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await req.get_media()
        await self._queue(keys=[_STREAM], args=[orjson.dumps(body)])
        # The answer is already there: the round trip, not the wait, is what this measures.
        await self._redis.xread({_STREAM: b"0-0"}, count=1)
        resp.data = ANSWER
        resp.content_type = falcon.MEDIA_JSON


class Stream:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await req.get_media()

        async def events() -> AsyncIterator[bytes]:
            for _ in range(STREAM_EVENTS):
                yield TOKEN_EVENT

        resp.content_type = "text/event-stream"
        resp.stream = events()


app = falcon.asgi.App()
app.add_route("/answer", Answer())
app.add_route("/queued", Queued())
app.add_route("/stream", Stream())
