"""A velesio deployment to break: Redis behind Sentinel (a master, a replica, three sentinels),
several API processes, and several workers, each worker a host of its own (network.py)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.processes import Process, free_port, http_ok, service_env, spawn, wait_until
from tests.support.sentinel import SentinelSet

from .network import Host, Network

TOKEN = "chaos-token"
#: Short enough that a job nobody picks up, or one whose worker vanished, ends well within the
#: load's hang bound (load.HUNG_AFTER_S); long enough for a loaded 2-core machine.
JOB_DEADLINE_S = 10
JOB_TIMEOUT_S = 20
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 3
#: A job silent this long is taken for hung (the llama-server SIGSTOP scenario); the tiny model
#: reads its prompts in milliseconds, so no live job comes near it.
JOB_PROGRESS_TIMEOUT_S = 4
#: What a SIGTERMed worker gives its running jobs (rolling restarts).
DRAIN_TIMEOUT_S = 10
SLOTS_PER_WORKER = 4
#: Per API process; the slow-socket flood opens more than this many sockets against each.
MAX_CONNECTIONS = 200


@dataclass
class Worker:
    host: Host
    process: Process
    metrics_url: str

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def llama_server_pid(self) -> int | None:
        """The worker's generating llama-server (a child process; not the embeddings one), for
        scenarios that stop or kill it."""
        # A thread of the worker starts it (its supervisor), so it is that thread's child.
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for pid in children:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                if "llama-server" in command and "generate.sock" in command:
                    return int(pid)
        return None


@dataclass
class Api:
    process: Process
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path


@dataclass
class Cluster:
    network: Network
    redis: SentinelSet
    logs: Path
    model: Path
    apis: list[Api] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    _replacements: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    @classmethod
    def start(cls, logs: Path, model: Path, *, apis: int = 2, workers: int = 2) -> Cluster:
        network = Network.create()
        try:
            redis = SentinelSet.start(logs, host=network.address)
        except BaseException:
            network.remove()
            raise
        cluster = cls(network, redis, logs, model)
        try:
            for index in range(workers):
                cluster.add_worker(f"w{index}")
            for index in range(apis):
                cluster.add_api(f"api{index}")
            cluster.wait_healthy(timeout=240)
        except BaseException:
            for process in [*(api.process for api in cluster.apis), *(w.process for w in cluster.workers)]:
                print(f"--- {process.name} ---\n{process.log()[-3000:]}")
            cluster.stop()
            raise
        return cluster

    def env(self, **values: str) -> dict[str, str]:
        return service_env(
            API_TOKENS=TOKEN,
            **self.redis.env(),
            MODEL_PATH=str(self.model),
            RUN_LLAMACPP="true",
            LLAMA_SLOTS=str(SLOTS_PER_WORKER),
            LLAMA_CTX="1024",
            LLAMA_SERVER_ARGS="--threads 1",
            JOB_DEADLINE=str(JOB_DEADLINE_S),
            JOB_TIMEOUT=str(JOB_TIMEOUT_S),
            HEADER_TIMEOUT=str(HEADER_TIMEOUT_S),
            BODY_TIMEOUT=str(BODY_TIMEOUT_S),
            JOB_PROGRESS_TIMEOUT=str(JOB_PROGRESS_TIMEOUT_S),
            DRAIN_TIMEOUT=str(DRAIN_TIMEOUT_S),
            API_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
            **values,
        )

    def add_worker(self, name: str) -> Worker:
        host = self.network.host(name)
        metrics_port = free_port()
        env = self.env(METRICS_HOST="0.0.0.0", METRICS_PORT=str(metrics_port), LLAMA_PORT=str(free_port()))
        command = host.wrap([sys.executable, "-m", "velesio_worker.main"])
        worker = Worker(
            host, spawn(name, command, env=env, logs=self.logs), f"http://{host.address}:{metrics_port}/metrics"
        )
        self.workers.append(worker)
        return worker

    def replace_worker(self, worker: Worker) -> Worker:
        """Start a new worker (on a new host) in place of one that died or stopped; the cluster
        forgets the old one."""
        self.workers.remove(worker)
        self._replacements += 1
        return self.add_worker(f"{worker.host.name.split('-')[0]}-{self._replacements}")

    def busy_slots(self, worker: Worker) -> float:
        """The worker's busy generation slots, from its /metrics (0 when it does not answer)."""
        try:
            text = requests.get(worker.metrics_url, timeout=2).text
        except requests.RequestException:
            return 0.0
        for line in text.splitlines():
            if line.startswith("velesio_worker_busy_slots"):
                return float(line.split()[-1])
        return 0.0

    def add_api(self, name: str) -> Api:
        port = free_port()
        env = self.env(API_HOST="127.0.0.1", API_PORT=str(port), API_WORKERS="1")
        api = Api(spawn(name, [sys.executable, "-m", "velesio_api.main"], env=env, logs=self.logs),
                  f"http://127.0.0.1:{port}")  # fmt: skip
        self.apis.append(api)
        return api

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every API answers /health and every worker's card is fresh in the registry."""

        def healthy() -> bool:
            for process in [*(api.process for api in self.apis), *(worker.process for worker in self.workers)]:
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
            return all(http_ok(api.url("/health")) for api in self.apis) and self.live_cards() >= len(self.workers)

        wait_until(healthy, timeout=timeout, what="the chaos cluster being healthy", interval=0.2)

    def live_cards(self) -> int:
        from velesio_core.queue.keys import WORKERS_KEY
        from velesio_core.registry import STALE_AFTER_S, WorkerCard

        try:
            cards = [WorkerCard.from_json(raw) for raw in self.redis.master_client().hvals(WORKERS_KEY)]
        except Exception:
            return 0
        return sum(time.time() - card.heartbeat_at < STALE_AFTER_S for card in cards)

    def metrics(self) -> list[str]:
        """Every API's and worker's /metrics text (a process that does not answer is left out)."""
        texts = []
        for url in [api.url("/metrics") for api in self.apis] + [worker.metrics_url for worker in self.workers]:
            try:
                texts.append(requests.get(url, headers=self.auth, timeout=5).text)
            except requests.RequestException:
                continue
        return texts

    def stop(self) -> None:
        for process in [*(api.process for api in self.apis), *(worker.process for worker in self.workers)]:
            process.stop(timeout=20)
        self.redis.stop()
        self.network.remove()
