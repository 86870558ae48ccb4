"""``velesio-api``: check the settings, then serve the API with gunicorn's native ASGI worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication

from velesio_core import machine
from velesio_core.metrics.multiprocess import MultiprocessDir
from velesio_core.settings import Settings, load_or_exit

from .edge import edge_worker

log = logging.getLogger(__name__)
#: Descriptors an API process needs besides its requests' (listening socket, logs, metrics files).
_SPARE_FILES = 64

if TYPE_CHECKING:  # only named here: the app's modules load in gunicorn's workers, after the fork
    from .forwarded import ForwardedClient


def gunicorn_options(settings: Settings) -> dict[str, object]:
    return {
        "bind": f"{settings.api_host}:{settings.api_port}",
        # gunicorn's asgi worker plus a header deadline and a connection cap (see edge.py).
        "worker_class": edge_worker(
            header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections
        ),
        "workers": settings.api_workers,
        # The asgi worker sends its heartbeat every second whatever requests do, so this bounds
        # only how long gunicorn waits for the next piece of a request body. The app's own
        # BODY_TIMEOUT deadline (relay.read_json) comes first and answers 408 in the client's
        # dialect; this later one only catches bodies that no route reads.
        "timeout": max(2, round(settings.body_timeout_s)) + 5,
        # On SIGTERM, requests in flight get this long; idle keep-alive connections hold it too.
        "graceful_timeout": 10,
        "keepalive": 75,
        "accesslog": None,
        # gunicorn 27 opens a control socket at one fixed path; velesio does not use it, and
        # several gunicorns on one machine (tests, standalone workers) would fight over it.
        "control_socket_disable": True,
    }


class Server(BaseApplication):
    """gunicorn, configured in code. ``load`` runs in each worker process after the fork, so that
    every process makes its own connections."""

    def __init__(self, options: dict[str, object], load: Callable[[], ForwardedClient]) -> None:
        self._options = options
        self._load = load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> ForwardedClient:
        return self._load()


def _create_app() -> ForwardedClient:
    from .app import create

    return create()


def metrics_hooks(directory: MultiprocessDir) -> dict[str, object]:
    """gunicorn hooks that keep the shared metrics right as its processes come and go."""
    return {
        "child_exit": lambda server, worker: directory.process_exited(worker.pid),
        "on_exit": lambda server: directory.remove(),
    }


def main() -> None:
    settings = load_or_exit(require_tokens=True)
    open_files, _hard = machine.raise_open_files_limit()
    if open_files < 2 * settings.max_connections + _SPARE_FILES:
        log.warning(
            "this process may open %d files, fewer than API_MAX_CONNECTIONS=%d waiting requests need (two each): "
            "raise its hard limit (systemd: LimitNOFILE) or lower API_MAX_CONNECTIONS",
            open_files,
            settings.max_connections,
        )
    options = gunicorn_options(settings)
    if settings.metrics:
        # Before the app (and so any metric) is imported in this process or a forked one.
        options |= metrics_hooks(MultiprocessDir.prepare())
    Server(options, _create_app).run()


if __name__ == "__main__":
    main()
