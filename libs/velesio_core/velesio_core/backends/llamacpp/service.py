"""The llama.cpp backend as a worker runs it.

Either velesio supervises its own llama-server (on a Unix socket, with as many slots as the
worker runs generations at once, GPU_LAYERS as ``-ngl``, restarted with backoff if it dies),
plus a second one with ``--embeddings`` (llama-server serves embeddings only when started for
nothing else); or it uses an external server at LLAMA_SERVER_URL and supervises nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ...settings import Settings, SettingsError
from ..base import ModelInfo
from .backend import LlamaServerBackend
from .process import LlamaServerProcess, find_llama_server

#: Slots of the embeddings server: embedding a sentence takes milliseconds.
_EMBEDDING_SLOTS = 2


def model_file(settings: Settings) -> Path:
    path = settings.model_path
    if not path.is_file():
        raise SettingsError(
            "MODEL_PATH",
            f"there is no model file at {path}",
            "put a GGUF model there, point MODEL_PATH at one, or set LLAMA_SERVER_URL",
        )
    return path


@dataclass
class LlamaCppService:
    backend: LlamaServerBackend
    processes: list[LlamaServerProcess] = field(default_factory=list)
    sockets_dir: Path | None = None

    @classmethod
    def start(cls, settings: Settings) -> LlamaCppService:
        if settings.llama_server_url:
            return cls(LlamaServerBackend(settings.llama_server_url))

        model = model_file(settings)
        binary = find_llama_server(settings.llama_server_bin)
        sockets = Path(tempfile.mkdtemp(prefix="velesio-llama-"))

        def llama_server(
            socket_name: str, slots: int, *, port: int | None = None, embeddings: bool = False
        ) -> LlamaServerProcess:
            return LlamaServerProcess(
                binary=binary,
                model=model,
                socket_path=sockets / socket_name,
                slots=slots,
                ctx_per_slot=settings.llama_ctx,
                gpu_layers=settings.gpu_layers,
                alias=settings.model_alias or model.stem,
                embeddings=embeddings,
                port=port,
                threads=settings.llama_threads,
                extra_args=settings.llama_server_args,
            )

        processes = [llama_server("generate.sock", settings.llama_slots, port=settings.llama_port)]
        if settings.llama_embeddings:
            processes.append(llama_server("embeddings.sock", _EMBEDDING_SLOTS, embeddings=True))
        service = cls(
            LlamaServerBackend(
                processes[0].url,
                embeddings_url=processes[1].url if len(processes) > 1 else None,
                model_file=model,
            ),
            processes,
            sockets,
        )
        try:
            with ThreadPoolExecutor(len(processes)) as starting:
                for started in [starting.submit(process.start) for process in processes]:
                    started.result()
        except BaseException:
            service.close()
            raise
        return service

    def models(self) -> list[ModelInfo]:
        return self.backend.models()

    @property
    def restarts(self) -> int:
        return sum(process.restarts for process in self.processes)

    def restart_hung(self) -> None:
        """Its llama-servers stopped making progress: kill them (each is restarted at once).
        Without processes of its own (LLAMA_SERVER_URL) there is nothing here to restart."""
        for process in self.processes:
            process.kill_hung()

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.backend.close()
        if self.sockets_dir is not None:
            shutil.rmtree(self.sockets_dir, ignore_errors=True)
