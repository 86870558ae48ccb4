"""Which workers are up and what they serve, so the API can answer model questions at once.

Each worker writes a card (its queues, the models it serves and, for an image worker, its
pipeline's checkpoints and state) into one Redis hash and
refreshes it every few seconds; a card not refreshed for ``STALE_AFTER_S`` is ignored. GET /props,
/template and the model lists are answered from the cards, without a round trip to a worker.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis import Redis
from redis.exceptions import RedisError

from .backends.base import ModelInfo
from .errors import ErrorKind, GatewayError, unavailable
from .queue.keys import WORKERS_KEY
from .queue.redis_queue import queue_error
from .results import ImageState

HEARTBEAT_S = 5.0
STALE_AFTER_S = 3 * HEARTBEAT_S


@dataclass
class WorkerCard:
    worker_id: str
    queues: list[str]
    models: list[ModelInfo]
    #: The image pipeline's state, when the worker runs one.
    images: ImageState | None = None
    #: Its Dramatiq broker's id: whose unacked messages the reaper hands back (queue/reaper.py).
    broker_id: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> WorkerCard:
        raw: dict[str, Any] = orjson.loads(data)
        raw["models"] = [ModelInfo(**model) for model in raw.get("models", [])]
        return cls(**raw)


class ModelDirectory(Protocol):
    """What the API asks about models, wherever the answer comes from."""

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        """The models workers serve, the default one first. ``fresh`` skips any cache."""
        ...

    async def images(self) -> list[ImageState]:
        """The state of every image pipeline (checkpoints, the loaded one, LoRAs, VAEs)."""
        ...


async def image_pipelines(directory: ModelDirectory) -> list[ImageState]:
    pipelines = await directory.images()
    if not pipelines:
        raise unavailable("no worker is running Stable Diffusion (RUN_SD=true) yet; retry shortly", retry_after_s=2)
    return pipelines


def same_model(served: str, asked: str) -> bool:
    """Ollama's clients name models ``name:tag``, and ``:latest`` is the tag that goes unsaid."""
    return served == asked or served.removesuffix(":latest") == asked.removesuffix(":latest")


def find_model(models: list[ModelInfo], name: str | None) -> ModelInfo:
    if not models:
        raise unavailable("no worker is serving a model yet; retry shortly", retry_after_s=2)
    if not name:
        return models[0]
    for model in models:
        if same_model(model.id, name):
            return model
    served = ", ".join(model.id for model in models)
    raise GatewayError(
        ErrorKind.NOT_FOUND,
        f"model '{name}' not found; this server has: {served}",
        extra={"param": "model", "code": "model_not_found"},
    )


def find_drop_in_model(models: list[ModelInfo], name: str | None, aliases: Mapping[str, str]) -> ModelInfo:
    """The model a llama.cpp or OpenAI client means, as a drop-in for llama-server must read it.

    No name: the default. With one model served, any name is that model, as llama-server serves
    its one model under whatever name a client sends (gpt-3.5-turbo, text-embedding-3-small).
    With several, a name is a served one or one of ``aliases`` (MODEL_ALIASES); others are a 404.
    """
    if name and len(models) > 1:
        return find_model(models, aliases.get(name, name))
    return find_model(models, None)


async def resolve_model(
    directory: ModelDirectory, name: str | None = None, *, aliases: Mapping[str, str] | None = None
) -> ModelInfo:
    """The model a request names (the default one when it names none), or a 404/503. With
    ``aliases``, by the drop-in policy of llama.cpp's and OpenAI's clients (find_drop_in_model)."""

    def find(models: list[ModelInfo]) -> ModelInfo:
        return find_model(models, name) if aliases is None else find_drop_in_model(models, name, aliases)

    try:
        return find(await directory.models())
    except GatewayError as error:
        if error.kind not in (ErrorKind.NOT_FOUND, ErrorKind.UNAVAILABLE):
            raise
        # A worker may have come up since the cache was filled.
        return find(await directory.models(fresh=True))


class CardPublisher:
    """A worker's side: keeps its card in the registry (call ``publish`` every HEARTBEAT_S)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def publish(self, card: WorkerCard) -> None:
        card.heartbeat_at = time.time()
        self._redis.hset(WORKERS_KEY, card.worker_id, card.to_json())

    def remove(self, worker_id: str) -> None:
        self._redis.hdel(WORKERS_KEY, worker_id)


class WorkerRegistry:
    """The API's side: which workers are up, and the models they serve."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def workers(self) -> list[WorkerCard]:
        try:
            raw = await self._redis.hgetall(WORKERS_KEY)
        except RedisError as error:
            raise queue_error(error) from None
        now = time.time()
        cards = [WorkerCard.from_json(data) for data in raw.values()]
        return sorted(
            (card for card in cards if now - card.heartbeat_at < STALE_AFTER_S),
            key=lambda card: card.started_at,
        )

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        seen: dict[str, ModelInfo] = {}
        for card in await self.workers():
            for model in card.models:
                seen.setdefault(model.id, model)
        return list(seen.values())

    async def images(self) -> list[ImageState]:
        return [card.images for card in await self.workers() if card.images is not None]


class CachedModelDirectory:
    """Asks its source at most once per ``ttl_s``: model questions come with almost every
    request, and the answer changes only when workers come and go."""

    def __init__(self, source: ModelDirectory, *, ttl_s: float = 1.0) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._models: list[ModelInfo] = []
        self._fetched_at = float("-inf")

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        if fresh or time.monotonic() - self._fetched_at > self._ttl_s:
            self._models = await self._source.models(fresh=True)
            self._fetched_at = time.monotonic()
        return self._models

    async def images(self) -> list[ImageState]:
        # Not cached: a checkpoint switch shows at once, and image jobs are few and slow.
        return await self._source.images()
