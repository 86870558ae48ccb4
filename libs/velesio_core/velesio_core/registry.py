"""Which workers are up and what they serve, so the API can answer model questions at once.

Each worker writes a card (its queues and the models it serves) into one Redis hash and
refreshes it every few seconds; a card not refreshed for ``STALE_AFTER_S`` is ignored. GET /props,
/template and the model lists are answered from the cards, without a round trip to a worker.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis import Redis
from redis.exceptions import RedisError

from .backends.base import ModelInfo
from .errors import unavailable
from .queue.keys import WORKERS_KEY
from .queue.redis_queue import queue_error

HEARTBEAT_S = 5.0
STALE_AFTER_S = 3 * HEARTBEAT_S


@dataclass
class WorkerCard:
    worker_id: str
    queues: list[str]
    models: list[ModelInfo]
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> WorkerCard:
        raw: dict[str, Any] = orjson.loads(data)
        raw["models"] = [ModelInfo(**model) for model in raw.get("models", [])]
        return cls(**raw)


class ModelDirectory(Protocol):
    """What the API asks about models, wherever the answer comes from."""

    async def models(self) -> list[ModelInfo]: ...


async def default_model(directory: ModelDirectory) -> ModelInfo:
    models = await directory.models()
    if not models:
        raise unavailable("no worker is serving a model yet; retry shortly", retry_after_s=2)
    return models[0]


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

    async def models(self) -> list[ModelInfo]:
        seen: dict[str, ModelInfo] = {}
        for card in await self.workers():
            for model in card.models:
                seen.setdefault(model.id, model)
        return list(seen.values())


class StaticModelDirectory:
    """The models of the backend in this very process (a standalone worker)."""

    def __init__(self, models: list[ModelInfo]) -> None:
        self._models = models

    async def models(self) -> list[ModelInfo]:
        return list(self._models)
