"""Start real servers for tests on free ports of 127.0.0.1, and stop exactly those, by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return requests.get(url, headers=headers, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


def spawn(name: str, command: list[str], *, env: dict[str, str], logs: Path) -> Process:
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log_path)


@dataclass
class RedisServer:
    port: int
    process: Process
    directory: str

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    @classmethod
    def start(cls, logs: Path) -> RedisServer:
        port = free_port()
        directory = tempfile.mkdtemp(prefix="velesio-test-redis-")
        command = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", directory]  # fmt: skip
        process = spawn(f"redis-{port}", command, env=dict(os.environ), logs=logs)
        server = cls(port, process, directory)
        wait_until(server._pong, timeout=10, what="redis-server answering PING")
        return server

    def _pong(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Stack:
    """A real velesio deployment: the API under gunicorn and a worker with its llama-server, its
    image pipeline, or both."""

    base_url: str
    token: str
    env: dict[str, str]
    llama_url: str | None
    #: The worker's own Prometheus endpoint (METRICS_PORT).
    worker_metrics_url: str | None = None
    processes: list[Process] = field(default_factory=list)

    @property
    def other_token(self) -> str:
        """Another key the API accepts."""
        return self.token + "-other"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> tuple[str, str]:
        """HTTP Basic credentials, as A1111 clients send them (the password is the token)."""
        return ("unity", self.token)

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def process(self, name: str) -> Process:
        return next(process for process in self.processes if process.name == name)


def service_env(**values: str) -> dict[str, str]:
    """The environment of a velesio process: none of this shell's velesio settings, and a metrics
    port of its own for every worker."""
    ours = ("API_", "REDIS_", "LLAMA_", "METRICS", "PROMETHEUS_", "SD_", "RUN_", "MODEL", "LORA_", "VAE_",
            "DOWNLOAD_", "HF_TOKEN")  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    env.update(LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", METRICS_HOST="127.0.0.1", METRICS_PORT=str(free_port()))
    env.update(values)
    return env


def start_worker(env: dict[str, str], logs: Path, name: str = "worker") -> Process:
    return spawn(name, [sys.executable, "-m", "velesio_worker.main"], env=env, logs=logs)


def start_api(env: dict[str, str], logs: Path, name: str = "api") -> Process:
    return spawn(name, [sys.executable, "-m", "velesio_api.main"], env=env, logs=logs)


def start_stack(
    redis_url: str, model: Path | None, logs: Path, *, worker: bool = True, name: str = "stack", **settings: str
) -> Stack:
    """Start an API and (``worker``) a worker. ``model`` is the GGUF; None runs no LLM. Pass
    ``MODELS_DIR`` and ``RUN_SD="true"`` for Stable Diffusion (see tests/support/sd.py)."""
    api_port, llama_port = free_port(), free_port()
    token = "test-token-" + name
    defaults = {
        "REDIS_URL": redis_url,
        # A second key, so tests can tell what one key may see of another's (stored responses).
        "API_TOKENS": f"{token},{token}-other",
        "MODEL_PATH": str(model) if model else "",
        "RUN_LLAMACPP": "true" if model else "false",
        "API_PORT": str(api_port),
        "API_HOST": "127.0.0.1",
        "API_WORKERS": "1",
        "LLAMA_SLOTS": "8",
        "LLAMA_CTX": "4096",
        "LLAMA_PORT": str(llama_port),
        "LLAMA_SERVER_ARGS": "--threads 1",
        "BODY_TIMEOUT": "3",
    }
    env = service_env(**(defaults | settings))
    stack = Stack(
        f"http://127.0.0.1:{api_port}",
        token,
        env,
        llama_url=f"http://127.0.0.1:{llama_port}" if worker else None,
        worker_metrics_url=f"http://127.0.0.1:{env['METRICS_PORT']}/metrics" if worker else None,
    )
    try:
        if worker:
            stack.processes.append(start_worker(env, logs, f"{name}-worker"))
        stack.processes.append(start_api(env, logs, f"{name}-api"))
        wait_until(lambda: _up(stack, worker), timeout=180, what=f"{name} becoming healthy", interval=0.1)
    except BaseException:
        stack.stop()
        for process in stack.processes:
            print(f"--- {process.name} log ---\n{process.log()[-4000:]}")
        raise
    return stack


def _up(stack: Stack, worker: bool) -> bool:
    for process in stack.processes:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with code {process.popen.returncode}:\n{process.log()[-3000:]}")
    if worker:
        runs_llm = stack.env["RUN_LLAMACPP"] != "false" or stack.env.get("RUN_OLLAMA") == "true"
        llm = not runs_llm or http_ok(stack.url("/health"))
        return llm and (stack.env.get("RUN_SD") != "true" or http_ok(stack.url("/sdapi/v1/sd-models"), stack.auth))
    try:
        return requests.get(stack.url("/health"), timeout=1).status_code in (200, 503)
    except requests.RequestException:
        return False


def llama_metric(llama_url: str, name: str) -> float:
    """A counter from llama-server's Prometheus endpoint, e.g. llamacpp:n_decode_total."""
    for line in requests.get(llama_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def busy_slots(llama_url: str) -> int:
    return sum(slot["is_processing"] for slot in requests.get(llama_url + "/slots", timeout=10).json())
