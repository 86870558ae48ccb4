"""API=false: the worker serves its backends itself, with no Redis: llama.cpp's API on LLM_PORT
(1337) and AUTOMATIC1111's on SD_PORT (7860), as llama-server and A1111 would.

The same Falcon app as velesio's API, with auth and every dialect, but its jobs run on threads of
this process: as many generations at once as the LLM has slots, one image job at a time. Its
metrics are served on METRICS_PORT, as any worker's, and on the app's own /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from velesio_api.app import create_app
from velesio_api.forwarded import ForwardedClient
from velesio_api.main import Server, gunicorn_options
from velesio_core.backends.base import ModelInfo
from velesio_core.image_board import LocalImageBoard
from velesio_core.jobs import Job
from velesio_core.metrics.worker import JobMetrics, check_metrics_port
from velesio_core.queue.local_queue import LocalJobHandle, LocalJobQueue
from velesio_core.results import ImageState
from velesio_core.settings import Settings, SettingsError, exit_with
from velesio_core.supervision import JobSupervisor

from .runtime import Backends, start_metrics, worker_id


class InProcessWorker:
    """The worker inside a standalone process: it starts the backends with the app (as its
    middleware) and serves as the app's job queue, model directory and image board."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._backends: Backends | None = None
        self._queue: LocalJobQueue | None = None
        self._models: list[ModelInfo] = []
        self._stop_metrics: Callable[[], None] = lambda: None
        self.board = LocalImageBoard()

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        settings, worker = self._settings, worker_id()
        self._backends = backends = await asyncio.to_thread(Backends.start, settings)
        observer = JobMetrics() if settings.metrics else None
        supervisor = JobSupervisor(backends.dispatcher(worker, self.board), observer)
        self.board.control_job = supervisor.control
        self._queue = LocalJobQueue(
            supervisor, slots=settings.llama_slots, queue_cap=settings.queue_cap, board=self.board
        )
        try:
            self._models = await asyncio.to_thread(backends.models)
            self._stop_metrics = start_metrics(settings, worker, backends, supervisor)
        except BaseException:
            await self.process_shutdown(scope, event)
            raise

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        self._stop_metrics()
        if self._queue is not None:
            await self._queue.close()
        if self._backends is not None:
            await asyncio.to_thread(self._backends.close)

    async def submit(self, job: Job) -> LocalJobHandle:
        assert self._queue is not None, "the app has not started"
        return await self._queue.submit(job)

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        return list(self._models)

    async def images(self) -> list[ImageState]:
        status = self._backends.image_status() if self._backends is not None else None
        return [status] if status is not None else []

    async def close(self) -> None:
        """Closed with the app, in process_shutdown."""


def create_standalone_app(settings: Settings) -> ForwardedClient:
    worker = InProcessWorker(settings)
    return create_app(settings, worker, worker, worker.board, extra_middleware=[worker])


def serve(settings: Settings) -> None:
    try:
        settings.require_tokens()
        if settings.metrics:
            check_metrics_port(settings.metrics_host, settings.metrics_port)
    except SettingsError as error:
        exit_with(error)
    ports = []
    if settings.llm_backend is not None:
        ports.append(settings.standalone_llm_port)
    if settings.run_sd:
        ports.append(settings.standalone_sd_port)
    options = gunicorn_options(settings) | {"bind": [f"{settings.api_host}:{port}" for port in ports], "workers": 1}
    Server(options, lambda: create_standalone_app(settings)).run()
