"""The Ollama backend as a worker runs it: nothing to supervise, an Ollama server to reach.

The worker serves the models the Ollama server has when the worker starts (each model gets its
queues then); OLLAMA_MODEL, when set, is the default for requests that name none. A model pulled
later is served after a worker restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ...errors import GatewayError
from ...settings import Settings, SettingsError
from ..base import ModelInfo
from .backend import OllamaBackend

#: How long a starting worker waits for its Ollama server (which may start after it).
_WAIT_FOR_SERVER_S = 60.0

_Answer = TypeVar("_Answer")


@dataclass
class OllamaService:
    backend: OllamaBackend
    _models: list[ModelInfo]
    restarts: int = 0

    @classmethod
    def start(cls, settings: Settings) -> OllamaService:
        backend = OllamaBackend(
            settings.ollama_server_url,
            api_key=settings.ollama_api_key,
            ctx=settings.llama_ctx,
            slots=settings.llama_slots,
        )
        try:
            models = _first_answer(backend.models)
        except GatewayError as error:
            backend.close()
            raise SettingsError(
                "OLLAMA_SERVER_URL",
                f"the Ollama server did not answer ({error.message})",
                "start Ollama or point OLLAMA_SERVER_URL (and OLLAMA_API_KEY) at one",
            ) from None
        if not models:
            backend.close()
            raise SettingsError("OLLAMA_SERVER_URL", "the Ollama server has no model", "pull one (ollama pull ...)")
        if settings.ollama_model:
            chosen = [
                model for model in models if model.id in (settings.ollama_model, f"{settings.ollama_model}:latest")
            ]
            if not chosen:
                backend.close()
                served = ", ".join(model.id for model in models)
                raise SettingsError(
                    "OLLAMA_MODEL",
                    f"the Ollama server has no {settings.ollama_model!r}",
                    f"pull it, or choose one of: {served}",
                )
            models = chosen + [model for model in models if model not in chosen]
        return cls(backend, models)

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    def restart_hung(self) -> None:
        """Ollama runs outside the worker: nothing to restart here; its stalled jobs still end."""

    def close(self) -> None:
        self.backend.close()


def _first_answer(ask: Callable[[], _Answer]) -> _Answer:
    deadline = time.monotonic() + _WAIT_FOR_SERVER_S
    while True:
        try:
            return ask()
        except GatewayError:
            if time.monotonic() > deadline:
                raise
            # Waiting for another server to come up, at start, outside any request.
            time.sleep(1)
