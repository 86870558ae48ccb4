"""Other gateways over the same llama-server: LiteLLM's proxy and Portkey's gateway, installed
outside the project (in ~/.cache/velesio-bench, at pinned versions, once) and measured beside
velesio on OpenAI's chat completions. A peer that cannot be installed or started here is
reported as not run, with the reason, and the rest of the bench goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.report import Section, ms
from bench.wrk import WrkRun, wrk
from tests.support.processes import Process, Stack, free_port, spawn

CACHE = Path.home() / ".cache" / "velesio-bench"
#: The versions measured; a change here reinstalls on the next run.
LITELLM_VERSION = "1.108.7"
PORTKEY_VERSION = "1.15.2"
LITELLM_KEY = "sk-velesio-bench"
MODEL = "tiny"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Greet the king"}], "max_tokens": 8, "seed": 1}
LEVELS = (1, 8)

#: Node's listen(), made to bind 127.0.0.1 where a server names no host: Portkey's gateway
#: listens on every interface and has no option for it.
_LOCAL_LISTEN = """import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number") {
    if (args[1] === undefined || args[1] === null) args[1] = "127.0.0.1";
    else if (typeof args[1] === "function") args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
"""


class NotRun(Exception):
    """Why a peer could not be measured here."""


@dataclass
class Peer:
    name: str
    version: str
    url: str
    headers: dict[str, str]
    process: Process


def _install(what: str, command: list[str], log: Path) -> None:
    print(f"bench: installing {what} into {CACHE} ...", flush=True)
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if "WARNING" not in line][-1:]
        raise NotRun(f"installing {what} failed ({' '.join(tail) or done.returncode}; see {log})")


def install_litellm() -> Path:
    """LiteLLM's proxy in a virtualenv of its own, once per version: its ``litellm`` command."""
    venv = CACHE / "litellm"
    if not list(venv.glob(f"lib/python*/site-packages/litellm-{LITELLM_VERSION}.dist-info")):
        CACHE.mkdir(parents=True, exist_ok=True)
        if not (venv / "bin" / "pip").exists():
            _install("a virtualenv for LiteLLM", [sys.executable, "-m", "venv", str(venv)], CACHE / "litellm.log")
        _install(f"LiteLLM {LITELLM_VERSION}", [str(venv / "bin" / "pip"), "install", "--quiet",
                 f"litellm[proxy]=={LITELLM_VERSION}"], CACHE / "litellm.log")  # fmt: skip
    return venv / "bin" / "litellm"


def install_portkey() -> Path:
    """Portkey's gateway from npm, once per version: its server script."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise NotRun("Node.js (node and npm) is not installed")
    prefix = CACHE / "portkey"
    package = prefix / "node_modules" / "@portkey-ai" / "gateway"
    try:
        installed = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        installed = None
    if installed != PORTKEY_VERSION:
        prefix.mkdir(parents=True, exist_ok=True)
        _install(f"Portkey's gateway {PORTKEY_VERSION}", ["npm", "install", "--prefix", str(prefix), "--no-audit",
                 "--no-fund", f"@portkey-ai/gateway@{PORTKEY_VERSION}"], CACHE / "portkey.log")  # fmt: skip
    return package / "build" / "start-server.js"


def _spawn(name: str, command: list[str], env: dict[str, str], logs: Path) -> Process:
    (logs / f"{name}.log").unlink(missing_ok=True)  # this run's log only
    return spawn(name, command, env=env, logs=logs)


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        response = requests.post(url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10)
    except requests.RequestException:
        return False
    try:
        return response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
    except (ValueError, LookupError, TypeError):  # an answer, but not a chat completion
        return False


def _started(name: str, version: str, process: Process, url: str, headers: dict[str, str]) -> Peer:
    """Wait for the peer's first good chat answer (what a start that went wrong never gives)."""
    deadline = time.monotonic() + 300
    while not _answers(url, headers):
        if process.popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            last = process.log().strip().splitlines()[-1:] or ["no output"]
            raise NotRun(f"{name} did not answer a chat completion ({last[0][:200]}; see {process.log_path})")
        time.sleep(0.5)
    return Peer(name, version, url, headers, process)


def start_litellm(work: Path, logs: Path, llama_url: str, api_workers: int) -> Peer:
    litellm = install_litellm()
    config = work / "litellm.yaml"
    # One route, the model name to llama-server's OpenAI endpoint, behind a master key (it refuses
    # to start without one), and no database.
    config.write_text(json.dumps({"model_list": [{"model_name": MODEL, "litellm_params": {
        "model": f"openai/{MODEL}", "api_base": llama_url + "/v1", "api_key": "none"}}],
        "general_settings": {"master_key": LITELLM_KEY}}))  # fmt: skip
    port = free_port()
    # The model-cost map ships in the package: no fetch from the internet at start.
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    command = [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", str(api_workers)]  # fmt: skip
    process = _spawn("litellm", command, env=env, logs=logs)
    headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
    return _started("LiteLLM proxy", LITELLM_VERSION, process, f"http://127.0.0.1:{port}", headers)


def start_portkey(work: Path, logs: Path, llama_url: str) -> Peer:
    server = install_portkey()
    preload = work / "listen-local.mjs"
    preload.write_text(_LOCAL_LISTEN)
    port = free_port()
    command = ["node", "--import", preload.as_uri(), str(server), f"--port={port}", "--headless"]
    process = _spawn("portkey", command, env=dict(os.environ), logs=logs)
    # The provider and its address travel in each request's headers; llama-server takes any key.
    headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": llama_url + "/v1",
               "Authorization": "Bearer none"}  # fmt: skip
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return _started("Portkey gateway", f"{PORTKEY_VERSION} (Node.js {node})", process,
                    f"http://127.0.0.1:{port}", headers)  # fmt: skip


@dataclass
class Median:
    rate: float
    p50: float
    p99: float


def _median(runs: list[WrkRun]) -> Median:
    def middle(value: Callable[[WrkRun], float]) -> float:
        return sorted(value(run) for run in runs)[len(runs) // 2]

    return Median(middle(lambda run: run.rate), middle(lambda run: run.p50), middle(lambda run: run.p99))


def _one_line(error: BaseException) -> str:
    """An error as one table cell: its words on one line, no column separators, 300 characters."""
    return " ".join(str(error).replace("|", "/").split())[:300]


def compare(section: Section, work: Path, stack: Stack, api_workers: int, seconds: float, rounds: int) -> None:
    assert stack.llama_url is not None
    # The peers' logs outlive the run (its work folder does not), for the reasons given as not run.
    logs = CACHE / "logs"
    sides: list[tuple[str, str, dict[str, str]]] = [("velesio", stack.base_url, stack.auth)]
    peers: list[Peer] = []
    not_run: list[tuple[str, str]] = []
    for name, start in (("LiteLLM proxy", lambda: start_litellm(work, logs, stack.llama_url, api_workers)),
                        ("Portkey gateway", lambda: start_portkey(work, logs, stack.llama_url))):  # fmt: skip
        print(f"bench: starting {name} ...", flush=True)
        try:
            peer = start()
        except (NotRun, OSError, subprocess.SubprocessError) as error:
            print(f"bench: {name} not run: {error}", flush=True)
            not_run.append((name, _one_line(error)))
            continue
        peers.append(peer)
        sides.append((f"{peer.name} {peer.version}", peer.url, peer.headers))
    runs: dict[tuple[str, int], list[WrkRun]] = {}
    failed: dict[str, str] = {}  # peers that failed under load, and why
    try:
        for clients in LEVELS:
            for _ in range(rounds + 1):  # the first round warms every side up, for 1 s each
                for side, url, headers in [("direct", stack.llama_url, {}), *sides]:
                    if side in failed:
                        continue
                    warming = (side, clients) not in runs
                    if not warming:
                        print(f"bench: {side}, {clients} client(s) ...", flush=True)
                    try:
                        run = wrk(url + "/v1/chat/completions", CHAT, seconds=1 if warming else seconds,
                                  connections=clients, headers=headers)  # fmt: skip
                    except (RuntimeError, subprocess.CalledProcessError) as error:
                        if side in ("direct", "velesio"):
                            raise
                        failed[side] = f"failed under load with {clients} client(s): {_one_line(error)}"
                        continue
                    if warming:
                        runs[(side, clients)] = []
                    else:
                        runs[(side, clients)].append(run)
    finally:
        for peer in peers:
            peer.process.stop()

    for clients in LEVELS:
        direct = _median(runs[("direct", clients)])
        section.add(f"{clients} client(s), direct (llama-server's own): p50 / p99, req/s",
                    f"{ms(direct.p50)} / {ms(direct.p99)}, {direct.rate:,.0f}")  # fmt: skip
        for side, _, _ in sides:
            if side in failed:
                continue
            run = _median(runs[(side, clients)])
            added = f"{ms(run.p50 - direct.p50)} / {ms(run.p99 - direct.p99)}"
            section.add(f"{clients} client(s), {side}: **added** p50 / p99, throughput ratio to direct",
                        f"{added}, {run.rate / direct.rate:.2f}")  # fmt: skip
    not_run += failed.items()
    for name, reason in not_run:
        section.add(f"{name}: not run", reason)
    section.notes += [
        "Each gateway forwards OpenAI's `/v1/chat/completions` (one user message, `max_tokens` 8, not",
        "streamed) to the same llama-server, whose own endpoint is the direct side. Load is wrk with 1",
        f"and with 8 keep-alive connections, {seconds:g} s a run, the sides one after another; with",
        f"{rounds} round(s) each figure is the median of its runs. p50 / p99 are wrk's latency percentiles,",
        "and added is the gateway's minus direct's. Each peer runs as its documentation starts it, with",
        "its defaults: LiteLLM's proxy (`litellm --config`, a master key and no database, one route",
        f"`openai/{MODEL}` to llama-server's /v1, {api_workers} uvicorn worker(s) as velesio has API",
        "processes here) and Portkey's gateway (`node build/start-server.js --headless`, the provider",
        "given per request: `x-portkey-provider: openai`, `x-portkey-custom-host`, bound to 127.0.0.1 by",
        "a preloaded module as it has no option for it). velesio is the default stack of this bench, with",
        "a bearer key. The peers are installed once, outside the project, under ~/.cache/velesio-bench;",
        "a peer that cannot be installed or started here is listed as not run, with the reason.",
    ]
