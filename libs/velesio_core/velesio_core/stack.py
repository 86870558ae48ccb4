"""``velesio-stack`` (what ``make up`` runs): Redis, a worker and the API on one machine.

With nothing configured it serves the embedded default: the tiny model, a tiny Stable Diffusion
pipeline behind AUTOMATIC1111's API, a Redis of its own and a freshly generated token, printed
once. Everything the services read from the environment still
applies (API_TOKENS, REDIS_URL, MODEL_PATH, ...). Ctrl-C stops every process it started.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from .settings import Settings, SettingsError, exit_with
from .tenants.secrets import generate_server_secret
from .tiny_model import MODEL_NAME, write_tiny_model
from .tiny_pipeline import MODEL_NAME as TINY_SD_NAME
from .tiny_pipeline import write_tiny_pipeline

_HEALTH_TIMEOUT_S = 300


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # its address is (host, port), the family being IPv4
        return port


class Stack:
    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.notes: list[str] = []
        self._redis_dir: str | None = None

    def start(self) -> Settings:
        token = self._ensure_token()
        self._ensure_key_secret()
        self._ensure_redis()
        self._ensure_model()
        try:
            self._ensure_checkpoint()
            settings = Settings.from_env(self.env)
        except SettingsError as error:
            self.stop()
            exit_with(error)
        settings = self._ensure_metrics_port(settings)
        self._spawn("worker", [sys.executable, "-m", "velesio_worker.main"])
        self._spawn("api", [sys.executable, "-m", "velesio_api.main"])
        self._wait_healthy(settings, token)
        self._print_banner(settings, token)
        return settings

    def _ensure_token(self) -> str:
        tokens = [t.strip() for t in self.env.get("API_TOKENS", "").split(",") if t.strip()]
        if tokens:
            return tokens[0]
        token = "dev-" + secrets.token_urlsafe(24)
        self.env["API_TOKENS"] = token
        self.notes.append("generated a development token (set API_TOKENS to choose your own)")
        return token

    def _ensure_key_secret(self) -> None:
        """Stored API keys need a server secret; keep one in .run/ so keys survive a restart."""
        if self.env.get("KEY_SECRET") or self.env.get("KEY_SECRET_FILE"):
            return
        path = Path(".run") / "key_secret"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created readable by this user only, before the secret is written into it.
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(generate_server_secret() + "\n")
            self.notes.append(f"generated the server secret of stored API keys in {path} (KEY_SECRET_FILE)")
        self.env["KEY_SECRET_FILE"] = str(path.resolve())

    def _ensure_redis(self) -> None:
        if self.env.get("REDIS_URL") or self.env.get("REDIS_HOST"):
            return
        binary = shutil.which("redis-server")
        if binary is None:
            exit_with(
                SettingsError(
                    "REDIS_URL",
                    "no Redis is configured and redis-server is not installed",
                    "run make up (it installs redis-server) or set REDIS_URL",
                )
            )
        port = 6379 if _port_free(6379) else _free_port()
        self._redis_dir = tempfile.mkdtemp(prefix="velesio-redis-")
        storage = ["--save", "", "--appendonly", "no", "--dir", self._redis_dir, "--logfile", "redis.log"]
        self._spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", *storage])
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if port != 6379:
            self.notes.append(f"port 6379 was taken, so velesio's Redis listens on {port}")

    def _ensure_model(self) -> None:
        if self.env.get("LLAMA_SERVER_URL") or self.env.get("MODEL_PATH"):
            return
        default = Path(self.env.get("MODELS_DIR", "models")) / "text" / "model.gguf"
        if default.is_file() or self.env.get("MODEL_URL"):
            return
        tiny = default.with_name(f"{MODEL_NAME}.gguf")
        if not tiny.is_file():
            write_tiny_model(tiny)
        self.env["MODEL_PATH"] = str(tiny)
        self.notes.append(f"no model configured: serving the tiny test model ({tiny}); put a GGUF at {default}")

    def _ensure_metrics_port(self, settings: Settings) -> Settings:
        if not settings.metrics or "METRICS_PORT" in self.env or _port_free(settings.metrics_port):
            return settings
        port = _free_port()
        self.env["METRICS_PORT"] = str(port)
        self.notes.append(f"port {settings.metrics_port} was taken, so the worker's metrics listen on {port}")
        return dataclasses.replace(settings, metrics_port=port)

    def _ensure_checkpoint(self) -> None:
        """Stable Diffusion is on unless RUN_SD says otherwise; with no checkpoint, the tiny one."""
        self.env.setdefault("RUN_SD", "true")
        settings = Settings.from_env(self.env)
        if not settings.run_sd or settings.sd_model or settings.sd_model_url:
            return
        from .backends.sd.checkpoints import find_checkpoints

        folder = settings.sd_checkpoints_dir
        real = [c for c in find_checkpoints(folder) if c.name != TINY_SD_NAME]
        if real:
            # The tiny pipeline from an earlier run stays there; never let it win over a real one.
            self.env["SD_MODEL"] = real[0].name
            return
        if not (folder / TINY_SD_NAME / "model_index.json").is_file():
            write_tiny_pipeline(folder / TINY_SD_NAME)
        self.env["SD_MODEL"] = TINY_SD_NAME
        self.notes.append(
            f"no Stable Diffusion checkpoint: serving a tiny one (noise pictures); put a .safetensors in {folder}"
        )

    def _spawn(self, name: str, command: list[str]) -> None:
        process = subprocess.Popen(command, env=self.env, start_new_session=True)
        self.processes.append((name, process))

    def _wait_healthy(self, settings: Settings, token: str) -> None:
        """Until the API answers for every backend: /health for the LLM, the checkpoint list for images."""
        base = f"http://127.0.0.1:{settings.api_port}"
        pending = []
        if settings.llm_backend:
            pending.append(urllib.request.Request(base + "/health"))
        if settings.run_sd:
            pending.append(
                urllib.request.Request(base + "/sdapi/v1/sd-models", headers={"Authorization": f"Bearer {token}"})
            )
        deadline = time.monotonic() + _HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    self.stop()
                    sys.exit(f"velesio: the {name} exited with code {process.returncode} while starting")
            try:
                with urllib.request.urlopen(pending[0], timeout=2) as response:
                    if response.status == 200:
                        pending.pop(0)
                        if not pending:
                            return
                        continue
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"velesio: the API was not healthy after {_HEALTH_TIMEOUT_S} s")

    def _print_banner(self, settings: Settings, token: str) -> None:
        base = f"http://127.0.0.1:{settings.api_port}"
        lines = [
            "",
            f"velesio is up at {base}",
            f"  token:  {token}",
            "  try:    curl -N " + base + "/completion -H 'Authorization: Bearer " + token + "' \\",
            "            -H 'Content-Type: application/json' \\",
            '            -d \'{"prompt": "Hello", "n_predict": 32, "stream": true}\'',
            "  LLM for Unity: host " + base + ", API key as above",
            "  Stable Diffusion (AUTOMATIC1111 API): server URL " + base + ", any user name, the token as password",
            "          curl "
            + base
            + "/sdapi/v1/txt2img -u unity:"
            + token
            + " -H 'Content-Type: application/json' \\",
            '            -d \'{"prompt": "a stone wall", "steps": 4, "width": 64, "height": 64}\'',
            *self._metrics_lines(settings, base),
            *(f"  note:   {note}" for note in self.notes),
            "  Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(lines), flush=True)

    @staticmethod
    def _metrics_lines(settings: Settings, base: str) -> list[str]:
        if not settings.metrics:
            return []
        worker = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        return [
            f"  metrics: {base}/metrics (same token), {worker} (worker);",
            "           `velesio-monitoring` writes Prometheus and Grafana configuration for them",
        ]

    def wait(self) -> int:
        """Until Ctrl-C (0) or until a process dies (its exit code)."""
        stop = {"requested": False}

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop["requested"]:
            for name, process in self.processes:
                if process.poll() is not None:
                    print(f"velesio: the {name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    return process.returncode or 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        # Redis last: the worker still acknowledges and cancels jobs through it while it drains.
        services = [(name, process) for name, process in reversed(self.processes) if name != "redis"]
        _stop_all(services)
        _stop_all([(name, process) for name, process in self.processes if name == "redis"])
        if self._redis_dir:
            shutil.rmtree(self._redis_dir, ignore_errors=True)


def _stop_all(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for name, process in processes:
        if process.poll() is None:
            # gunicorn stops at once on SIGINT, instead of waiting for idle connections;
            # the worker drains its jobs on either signal.
            process.send_signal(signal.SIGINT if name == "api" else signal.SIGTERM)
    for _, process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    stack = Stack()
    stack.start()
    code = stack.wait()
    print("velesio: stopping", flush=True)
    stack.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
