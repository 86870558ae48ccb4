"""Worker cards written by tests, for situations a live worker cannot be held in."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import redis

from velesio_core.backends.base import ModelInfo
from velesio_core.registry import CardPublisher, WorkerCard


@contextlib.contextmanager
def unserved_model(client: redis.Redis, name: str = "ghost") -> Iterator[str]:
    """A model in the registry that no worker consumes (a worker that just died, or one whose
    every slot is taken): the API accepts its jobs and they wait. The card stays fresh for
    registry.STALE_AFTER_S; a test using it ends well within that."""
    card = WorkerCard(f"{name}-worker", [], [ModelInfo(id=name, n_ctx=128, slots=1)], started_at=time.time() + 60)
    CardPublisher(client).publish(card)
    try:
        yield name
    finally:
        CardPublisher(client).remove(card.worker_id)
        for key in client.scan_iter(f"dramatiq:*{name}*"):
            client.delete(key)
