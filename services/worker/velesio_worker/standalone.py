"""API=false: the worker serves llama.cpp's API itself on LLM_PORT (1337), with no Redis.

The same Falcon app as velesio's API, with auth and the LLM for Unity endpoints, but its jobs run
on threads of this process, on the worker's own llama-server. Its metrics are served on
METRICS_PORT, as any worker's, and on the app's own /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from velesio_api.app import create_app
from velesio_api.main import Server, gunicorn_options
from velesio_core.backends.base import ModelInfo
from velesio_core.backends.service import LlmService, start_llm_service
from velesio_core.execution import JobExecutor
from velesio_core.jobs import Job
from velesio_core.metrics.worker import JobMetrics, check_metrics_port
from velesio_core.queue.local_queue import LocalJobHandle, LocalJobQueue
from velesio_core.runner import JobRunner
from velesio_core.settings import Settings, SettingsError, exit_with

from .main import worker_id
from .runtime import start_metrics


class StandaloneBackend:
    """The job queue and model directory of a standalone worker, ready once the app has started."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._service: LlmService | None = None
        self._queue: LocalJobQueue | None = None
        self._models: list[ModelInfo] = []
        self._stop_metrics: Callable[[], None] = lambda: None

    async def process_startup(self, scope, event) -> None:
        settings, worker = self._settings, worker_id()
        self._service = await asyncio.to_thread(start_llm_service, settings)
        observer = JobMetrics() if settings.metrics else None
        executor = JobExecutor(JobRunner(self._service.backend, worker_id=worker), observer)
        self._queue = LocalJobQueue(executor, slots=settings.llama_slots, queue_cap=settings.queue_cap)
        try:
            self._models = await asyncio.to_thread(self._service.models)
            self._stop_metrics = start_metrics(settings, worker, self._service, executor)
        except BaseException:
            await self.process_shutdown(scope, event)
            raise

    async def process_shutdown(self, scope, event) -> None:
        self._stop_metrics()
        if self._queue is not None:
            await self._queue.close()
        if self._service is not None:
            await asyncio.to_thread(self._service.close)

    async def submit(self, job: Job) -> LocalJobHandle:
        assert self._queue is not None, "the app has not started"
        return await self._queue.submit(job)

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        return list(self._models)

    async def close(self) -> None:
        """Closed with the app, in process_shutdown."""


def create_standalone_app(settings: Settings):
    backend = StandaloneBackend(settings)
    return create_app(settings, backend, backend, extra_middleware=[backend])


def serve(settings: Settings) -> None:
    try:
        settings.require_tokens()
        if settings.metrics:
            check_metrics_port(settings.metrics_host, settings.metrics_port)
    except SettingsError as error:
        exit_with(error)
    options = gunicorn_options(settings) | {"bind": f"{settings.api_host}:{settings.standalone_llm_port}", "workers": 1}
    Server(options, lambda: create_standalone_app(settings)).run()
