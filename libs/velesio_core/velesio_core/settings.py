"""velesio's settings, read once from the environment.

The variable names of the original velesio deployment stay as they were (API_TOKENS, REDIS_URL,
RUN_LLAMACPP, ...); the ones velesio added are listed in the README. Every problem is reported as
one line that names the variable and says how to fix it, and the process stops before it serves
anything: a worker that starts with a typo in GPU_LAYERS is worse than one that does not start.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit

from . import machine

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting is missing, malformed or contradicts another one. ``str()`` is one line."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        super().__init__(f"{variable}: {problem}; {fix}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    api_tokens: tuple[str, ...]
    #: A single Redis (REDIS_URL, or REDIS_HOST/REDIS_PORT/REDIS_PASS); unused with REDIS_SENTINELS.
    redis_url: str
    #: Redis Sentinel: the sentinels (host, port) that name the current master, see redis_clients.py.
    redis_sentinels: tuple[tuple[str, int], ...]
    #: The master's name as the sentinels know it (their ``sentinel monitor <name> ...``).
    redis_sentinel_master: str
    #: The master's password under Sentinel (REDIS_PASS); the sentinels' own is separate.
    redis_password: str | None
    redis_sentinel_password: str | None
    #: TLS to Redis and the sentinels, checked against REDIS_TLS_CA when set (else the system's CAs).
    redis_tls: bool
    redis_tls_ca: Path | None
    run_llamacpp: bool
    run_ollama: bool
    #: A custom backend (backend_plugins): ``package.module:Class`` or a ``velesio.backends``
    #: entry-point name. Replaces the built-in LLM backends.
    run_backend: str | None
    run_sd: bool
    #: Worker mode: True takes jobs from Redis, False serves its backend alone on its own port.
    api: bool
    models_dir: Path
    model_url: str | None
    #: Expected sha256 of MODEL_URL's file (MODEL_SHA256, or a #sha256= fragment on the URL).
    model_sha256: str | None
    #: The GGUF file the worker's llama-server loads (MODEL_PATH, else models/text/model.gguf).
    model_path: Path
    #: The name clients use for the model (OpenAI's and Ollama's ``model``); the file's stem if unset.
    model_alias: str | None
    #: MODEL_ALIASES ("gpt-4o=qwen,text-embedding-3-small=nomic"): names OpenAI and llama.cpp
    #: clients send, mapped to served models, for when a worker serves several.
    model_aliases: dict[str, str]
    gpu_layers: int
    #: An external llama-server (http://host:port or unix:///path), instead of a supervised one.
    llama_server_url: str | None
    #: Also serve the supervised llama-server on 127.0.0.1:LLAMA_PORT (it always has a Unix socket).
    llama_port: int | None
    llama_server_bin: str | None
    #: Extra command-line arguments for the supervised llama-server (e.g. "--reranking"); they
    #: come last, so they override velesio's own.
    llama_server_args: tuple[str, ...]
    #: llama-server's generation threads (0: llama.cpp's own choice); from the machine if unset
    #: (machine.llama_threads).
    llama_threads: int
    #: Concurrent generations per worker: llama-server's slots (-np) and the worker's threads.
    llama_slots: int
    #: Context size of one slot, in tokens (llama-server's -c is this times the slots).
    llama_ctx: int
    llama_embeddings: bool
    ollama_server_url: str
    #: The model served when a request names none (the first the Ollama server lists if unset).
    ollama_model: str | None
    #: Sent as a Bearer token to the Ollama server (a gated host, or another velesio).
    ollama_api_key: str | None
    queue_cap: int
    #: Waiting jobs one API key may have in a queue, so that no key fills QUEUE_CAP alone
    #: (API_TOKENS' jobs are held to QUEUE_CAP only).
    key_queue_cap: int
    job_deadline_s: float
    job_timeout_s: float
    #: Seconds a running job may go without an event (a token, an image step) before its backend
    #: is taken for hung: the job ends with a 503 and the backend is restarted. llama-server says
    #: nothing while it reads a prompt, so this bounds prompt processing too.
    job_progress_timeout_s: float
    #: Seconds a stopping worker (SIGTERM) gives its running jobs; what it prefetched goes back at once.
    drain_timeout_s: float
    max_body_bytes: int
    #: Seconds a client may take to send its request body: then a 408, and the connection closes.
    body_timeout_s: float
    #: Seconds a client may take to send a request's headers (or its first byte, once connected).
    header_timeout_s: float
    #: Open connections per API process; more are answered 503 and closed at once.
    max_connections: int
    #: Origins whose browser pages may call the API with credentials; () lets any origin call it
    #: without them (tokens travel in headers, so a browser page sends them when it means to).
    cors_origins: tuple[str, ...]
    api_host: str
    api_port: int
    api_workers: int
    #: Peers (addresses or networks) whose X-Forwarded-For names the client: the reverse proxies.
    forwarded_allow_ips: tuple[IPv4Network | IPv6Network, ...]
    standalone_llm_port: int
    #: Measure and export velesio's metrics (the API's /metrics, the worker's METRICS_PORT).
    metrics: bool
    #: Where a worker serves its metrics to Prometheus.
    metrics_host: str
    metrics_port: int
    #: Port of a standalone (API=false) image worker: AUTOMATIC1111's own default.
    standalone_sd_port: int
    #: A checkpoint, a LoRA and a VAE to fetch at worker start when missing (see download.py).
    sd_model_url: str | None
    sd_model_sha256: str | None
    lora_url: str | None
    lora_sha256: str | None
    vae_url: str | None
    vae_sha256: str | None
    #: Sent as ``Authorization: Bearer`` to download hosts that gate files (DOWNLOAD_TOKEN or HF_TOKEN).
    download_token: str | None
    #: The checkpoint to load first (a file or folder name in the checkpoints folder); else the first.
    sd_model: str | None
    #: ``auto`` (CUDA when present, else CPU), ``cuda`` or ``cpu``.
    sd_device: str
    #: Extra diffusers config folders for single-file checkpoints, by model type (see sd/configs.py).
    sd_configs_dir: Path | None
    #: The largest image, in pixels per side, that a request may ask for or send.
    sd_max_side: int

    @property
    def sd_checkpoints_dir(self) -> Path:
        """AUTOMATIC1111's layout: models/image/models/Stable-diffusion/."""
        return self.models_dir / "image" / "models" / "Stable-diffusion"

    @property
    def sd_lora_dir(self) -> Path:
        return self.models_dir / "image" / "models" / "Lora"

    @property
    def sd_vae_dir(self) -> Path:
        return self.models_dir / "image" / "models" / "VAE"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        read = _Reader(env)
        models_dir = Path(read.text("MODELS_DIR", "models"))
        cpus = machine.usable_cpus()
        gpu_layers = read.integer("GPU_LAYERS", 0, minimum=-1)
        queue_cap = read.integer("QUEUE_CAP", 256, minimum=1)
        settings = cls(
            api_tokens=read.tokens("API_TOKENS"),
            redis_url=read.redis_url(),
            redis_sentinels=read.sentinels("REDIS_SENTINELS"),
            redis_sentinel_master=read.text("REDIS_SENTINEL_MASTER", "mymaster"),
            redis_password=read.text("REDIS_PASS", "") or None,
            redis_sentinel_password=read.text("REDIS_SENTINEL_PASSWORD", "") or None,
            redis_tls=read.flag("REDIS_TLS", False),
            redis_tls_ca=read.existing_file("REDIS_TLS_CA"),
            run_llamacpp=read.flag("RUN_LLAMACPP", True),
            run_ollama=read.flag("RUN_OLLAMA", False),
            run_backend=read.text("RUN_BACKEND", "") or None,
            run_sd=read.flag("RUN_SD", False),
            api=read.flag("API", True),
            models_dir=models_dir,
            model_url=read.url("MODEL_URL", schemes=("http", "https")),
            model_sha256=read.sha256("MODEL_SHA256"),
            model_path=Path(read.text("MODEL_PATH", str(models_dir / "text" / "model.gguf"))),
            model_alias=read.text("MODEL_ALIAS", "") or None,
            model_aliases=read.mapping("MODEL_ALIASES"),
            gpu_layers=gpu_layers,
            llama_server_url=read.url("LLAMA_SERVER_URL", schemes=("http", "https", "unix")),
            llama_port=read.optional_integer("LLAMA_PORT", minimum=1, maximum=65535),
            llama_server_bin=read.text("LLAMA_SERVER_BIN", "") or None,
            llama_server_args=read.arguments("LLAMA_SERVER_ARGS"),
            llama_threads=read.integer(
                "LLAMA_THREADS", machine.llama_threads(cpus, gpu_layers), minimum=0, maximum=1024
            ),
            llama_slots=read.integer("LLAMA_SLOTS", 4, minimum=1, maximum=256),
            llama_ctx=read.integer("LLAMA_CTX", 4096, minimum=128),
            llama_embeddings=read.flag("LLAMA_EMBEDDINGS", True),
            ollama_server_url=read.url("OLLAMA_SERVER_URL", schemes=("http", "https")) or "http://localhost:11434",
            ollama_model=read.text("OLLAMA_MODEL", "") or None,
            ollama_api_key=read.text("OLLAMA_API_KEY", "") or None,
            queue_cap=queue_cap,
            key_queue_cap=read.integer("KEY_QUEUE_CAP", max(1, queue_cap // 4), minimum=1),
            job_deadline_s=read.seconds("JOB_DEADLINE", 60.0),
            job_timeout_s=read.seconds("JOB_TIMEOUT", 600.0),
            job_progress_timeout_s=read.seconds("JOB_PROGRESS_TIMEOUT", 60.0),
            drain_timeout_s=read.seconds("DRAIN_TIMEOUT", 15.0),
            max_body_bytes=read.integer("MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024),
            body_timeout_s=read.seconds("BODY_TIMEOUT", 30.0),
            header_timeout_s=read.seconds("HEADER_TIMEOUT", 10.0),
            max_connections=read.integer("API_MAX_CONNECTIONS", 1000, minimum=1, maximum=1_000_000),
            cors_origins=read.origins("CORS_ORIGINS"),
            api_host=read.text("API_HOST", "0.0.0.0"),
            api_port=read.integer("API_PORT", 8000, minimum=1, maximum=65535),
            api_workers=read.integer("API_WORKERS", machine.api_workers(cpus), minimum=1, maximum=64),
            # gunicorn's own default and variable, which it reads too (for X-Forwarded-Proto).
            forwarded_allow_ips=read.networks("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
            standalone_llm_port=read.integer("LLM_PORT", 1337, minimum=1, maximum=65535),
            metrics=read.flag("METRICS", True),
            metrics_host=read.text("METRICS_HOST", "0.0.0.0"),
            metrics_port=read.integer("METRICS_PORT", 8001, minimum=1, maximum=65535),
            standalone_sd_port=read.integer("SD_PORT", 7860, minimum=1, maximum=65535),
            sd_model_url=read.url("SD_MODEL_URL", schemes=("http", "https")),
            sd_model_sha256=read.sha256("SD_MODEL_SHA256"),
            lora_url=read.url("LORA_URL", schemes=("http", "https")),
            lora_sha256=read.sha256("LORA_SHA256"),
            vae_url=read.url("VAE_URL", schemes=("http", "https")),
            vae_sha256=read.sha256("VAE_SHA256"),
            download_token=read.text("DOWNLOAD_TOKEN", "") or read.text("HF_TOKEN", "") or None,
            sd_model=read.text("SD_MODEL", "") or None,
            sd_device=read.choice("SD_DEVICE", "auto", ("auto", "cuda", "cpu")),
            sd_configs_dir=Path(read.text("SD_CONFIGS_DIR", "")) if read.text("SD_CONFIGS_DIR", "") else None,
            sd_max_side=read.integer("SD_MAX_SIDE", 2048, minimum=64, maximum=8192),
        )
        settings._check_consistency(env)
        return settings

    def __repr__(self) -> str:
        # Never print a secret: the tokens, the download token, a Redis password.
        redis = "sentinel" if self.redis_sentinels else urlsplit(self.redis_url).hostname
        return f"Settings(redis={redis}, api={self.api}, sd={self.run_sd}, ...)"

    def _check_consistency(self, env: Mapping[str, str]) -> None:
        if self.redis_sentinels and (env.get("REDIS_URL") or "").strip():
            raise SettingsError(
                "REDIS_SENTINELS",
                "REDIS_URL and REDIS_SENTINELS are both set, but the sentinels name the Redis to use",
                "unset REDIS_URL (REDIS_PASS is the master's password, REDIS_SENTINEL_MASTER its name)",
            )
        if self.redis_tls_ca is not None and not self.redis_tls:
            raise SettingsError("REDIS_TLS_CA", "is set but REDIS_TLS is not", "set REDIS_TLS=true")
        # RUN_LLAMACPP defaults to true: only an explicit "true" next to RUN_OLLAMA contradicts it.
        if self.run_llamacpp and self.run_ollama and "RUN_LLAMACPP" in env:
            raise SettingsError(
                "RUN_OLLAMA",
                "RUN_LLAMACPP and RUN_OLLAMA are both true, but a worker runs one LLM backend",
                "set one of them to false",
            )

        if self.run_backend and (self.run_ollama or (self.run_llamacpp and "RUN_LLAMACPP" in env)):
            variable = "RUN_OLLAMA" if self.run_ollama else "RUN_LLAMACPP"
            raise SettingsError(
                variable,
                f"RUN_BACKEND and {variable} are both set, but a worker runs one LLM backend",
                f"unset {variable}",
            )

    def require_tokens(self) -> None:
        """The API refuses to start open to the world: call this before serving."""
        if not self.api_tokens:
            raise SettingsError(
                "API_TOKENS",
                "no token is configured, so every client would be refused",
                "set API_TOKENS to one or more comma-separated secrets (make up generates one)",
            )

    @property
    def llm_backend(self) -> str | None:
        if self.run_backend:
            return "custom"
        if self.run_ollama:
            return "ollama"
        if self.run_llamacpp:
            return "llamacpp"
        return None


def load_or_exit(env: Mapping[str, str] | None = None, *, require_tokens: bool = False) -> Settings:
    """Settings for an entry point: on any problem, print the one line and exit with status 2."""
    try:
        settings = Settings.from_env(env)
        if require_tokens:
            settings.require_tokens()
        return settings
    except SettingsError as error:
        exit_with(error)


def exit_with(error: SettingsError) -> NoReturn:
    print(f"velesio: {error}", file=sys.stderr)
    raise SystemExit(2)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def flag(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise SettingsError(name, f"{value!r} is not a boolean", f"set {name}=true or {name}=false")

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, f"{value!r} is not a whole number", f"set {name} to e.g. {default}") from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise SettingsError(name, f"{number} is out of range", f"set {name} to a number {bounds}")
        return number

    def optional_integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        if self._raw(name) is None:
            return None
        return self.integer(name, 0, minimum=minimum, maximum=maximum)

    def seconds(self, name: str, default: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            problem = f"{value!r} is not a number of seconds"
            raise SettingsError(name, problem, f"set {name} to e.g. {default:g}") from None
        if not number > 0 or number == float("inf"):
            raise SettingsError(name, f"{value} is not a positive duration", f"set {name} to e.g. {default:g}")
        return number

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise SettingsError(name, f"{value!r} is not one of {', '.join(choices)}", f"set {name}={default}")
        return value

    def networks(self, name: str, default: str) -> tuple[IPv4Network | IPv6Network, ...]:
        entries = [entry.strip() for entry in self.text(name, default).split(",") if entry.strip()]
        if "*" in entries:
            return (ip_network("0.0.0.0/0"), ip_network("::/0"))
        try:
            return tuple(ip_network(entry, strict=False) for entry in entries)
        except ValueError as error:
            fix = f"set {name} to addresses or networks, e.g. 127.0.0.1,10.0.0.0/8, or * for any"
            raise SettingsError(name, str(error), fix) from None

    def sha256(self, name: str) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if not is_sha256(value):
            raise SettingsError(name, "is not a sha256 (64 hexadecimal digits)", f"set {name} to the file's sha256")
        return value.lower()

    def mapping(self, name: str) -> dict[str, str]:
        """``a=b,c=d`` as {"a": "b", "c": "d"}."""
        pairs: dict[str, str] = {}
        for item in (self._raw(name) or "").split(","):
            if not item.strip():
                continue
            key, equals, value = (part.strip() for part in item.partition("="))
            if not (key and equals and value):
                raise SettingsError(name, f"{item.strip()!r} is not name=model", "write name=model,name=model")
            pairs[key] = value
        return pairs

    def arguments(self, name: str) -> tuple[str, ...]:
        try:
            return tuple(shlex.split(self._raw(name) or ""))
        except ValueError as error:
            raise SettingsError(name, f"cannot be split into arguments ({error})", "check its quotes") from None

    def tokens(self, name: str) -> tuple[str, ...]:
        value = self._raw(name) or ""
        return tuple(token.strip() for token in value.split(",") if token.strip())

    def url(self, name: str, *, schemes: tuple[str, ...]) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        _check_url(name, value, schemes)
        return value

    def sentinels(self, name: str) -> tuple[tuple[str, int], ...]:
        value = self._raw(name)
        if value is None:
            return ()
        found = []
        for entry in (part.strip() for part in value.split(",")):
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                fix = f"set {name} to host:port pairs, e.g. sentinel-1:26379,sentinel-2:26379"
                raise SettingsError(name, f"{entry!r} is not host:port", fix)
            found.append((host.strip("[]"), int(port)))
        return tuple(found)

    def origins(self, name: str) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None or value == "*":
            return ()
        found = []
        for origin in (part.strip().rstrip("/") for part in value.split(",") if part.strip()):
            parts = urlsplit(origin)
            # "null" is what sandboxed frames and file:// pages send: any of them could claim it.
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
                fix = f"set {name} to * or to origins like https://game.example,http://localhost:8080"
                raise SettingsError(name, f"{origin!r} is not an origin (scheme://host[:port])", fix)
            found.append(origin)
        return tuple(found)

    def existing_file(self, name: str) -> Path | None:
        value = self._raw(name)
        if value is None:
            return None
        if not Path(value).is_file():
            raise SettingsError(name, f"{value} is not a file", f"set {name} to the path of a PEM file")
        return Path(value)

    def redis_url(self) -> str:
        url = self._raw("REDIS_URL")
        if url is not None:
            _check_url("REDIS_URL", url, ("redis", "rediss", "unix"))
            return url
        host = self.text("REDIS_HOST", "localhost")
        port = self.integer("REDIS_PORT", 6379, minimum=1, maximum=65535)
        password = self._raw("REDIS_PASS")
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{host}:{port}/0"


def is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> None:
    example = f"{schemes[0]}://host:port"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise SettingsError(name, "is not a valid URL", f"set it like {example}") from None
    if parts.scheme not in schemes:
        problem = f"scheme {parts.scheme or '(none)'!r} is not one of {', '.join(schemes)}"
        raise SettingsError(name, problem, f"set it like {example}")
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError(name, "has no host", f"set it like {example}")
