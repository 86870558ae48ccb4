"""The LLM backend a worker runs, chosen by the settings (RUN_LLAMACPP, RUN_OLLAMA or RUN_BACKEND)."""

from __future__ import annotations

from typing import Protocol

from ..settings import Settings
from .base import LlmBackend, ModelInfo


class LlmService(Protocol):
    """A backend together with whatever it needs running (processes, connections)."""

    # Read-only: each service holds its own kind of backend, which is an LlmBackend to the worker.
    @property
    def backend(self) -> LlmBackend: ...

    def models(self) -> list[ModelInfo]: ...

    @property
    def restarts(self) -> int:
        """How often the backend's processes were restarted (its model list may have changed)."""
        ...

    def restart_hung(self) -> None:
        """The backend stopped making progress under a job: restart what this service runs."""
        ...

    def close(self) -> None: ...


def start_llm_service(settings: Settings) -> LlmService:
    if settings.run_backend:
        from ..backend_plugins.serving import PluginService

        return PluginService.start(settings.run_backend)
    if settings.llm_backend == "ollama":
        from .ollama.service import OllamaService

        return OllamaService.start(settings)
    from .llamacpp.service import LlamaCppService

    return LlamaCppService.start(settings)
