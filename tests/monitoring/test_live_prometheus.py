"""A real Prometheus, configured by the rendered tree, scrapes a real two-process API, a real
worker, Debian's redis_exporter and node_exporter while real clients use velesio; afterwards
every query of every dashboard panel and every alert's signal returns data from it.

Two things are not real here: there is no GPU, so a small HTTP server stands in for NVIDIA's
dcgm-exporter and serves a fixed sample of its metrics; and Grafana cannot run here, so the
queries go to Prometheus's API as Grafana would send them (variables at "All").
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import ollama
import openai
import orjson
import pytest
import requests

from tests.monitoring.support import COMMITTED_TREE as COMMITTED
from tests.monitoring.support import alert_rules, dashboards, panel_queries, required
from tests.support.llmunity import post_chunks
from tests.support.processes import Process, free_port, http_ok, spawn, start_stack, wait_until
from velesio_core.monitoring.alerts import ALERT_RULES
from velesio_core.monitoring.config import MonitoringConfig, Targets
from velesio_core.monitoring.render import write_tree

pytestmark = pytest.mark.slow

#: What a dcgm-exporter on a one-GPU host serves (the metrics the GPU board reads), as a fake.
FAKE_DCGM_VALUES = {
    "DCGM_FI_DEV_GPU_UTIL": 87,
    "DCGM_FI_DEV_FB_USED": 41000,
    "DCGM_FI_DEV_FB_FREE": 39000,
    "DCGM_FI_DEV_GPU_TEMP": 61,
    "DCGM_FI_DEV_POWER_USAGE": 512.5,
    "DCGM_FI_DEV_SM_CLOCK": 1980,
}
FAKE_DCGM_LABELS = 'gpu="0",UUID="GPU-0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-host"'
FAKE_DCGM = "".join(f"{name}{{{FAKE_DCGM_LABELS}}} {value}\n" for name, value in FAKE_DCGM_VALUES.items()).encode()


class FakeDcgmExporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(FAKE_DCGM)))
        self.end_headers()
        self.wfile.write(FAKE_DCGM)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def watched(redis_server, tiny_model, sd_models, logs_dir):
    redis_server.client(9).flushdb()
    running = start_stack(redis_server.url(9), tiny_model, logs_dir, name="watched", API_WORKERS="2",
                          LLAMA_SLOTS="1", QUEUE_CAP="1", JOB_DEADLINE="1", LLAMA_EMBEDDINGS="false",
                          KEY_SECRET="watched-key-secret-" + "x" * 32, **sd_models.env())  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def prometheus(watched, redis_server, logs_dir, tmp_path_factory) -> Iterator[str]:
    exporters: list[Process] = []
    gpu = ThreadingHTTPServer(("127.0.0.1", 0), FakeDcgmExporter)
    threading.Thread(target=gpu.serve_forever, daemon=True).start()
    redis_port, node_port, prometheus_port = free_port(), free_port(), free_port()
    exporters.append(spawn("redis-exporter", [required("prometheus-redis-exporter"), "-redis.addr",
                                              f"redis://127.0.0.1:{redis_server.port}",
                                              "-web.listen-address", f"127.0.0.1:{redis_port}"],
                           env=dict(os.environ), logs=logs_dir))  # fmt: skip
    exporters.append(spawn("node-exporter", [required("prometheus-node-exporter"),
                                             f"--web.listen-address=127.0.0.1:{node_port}"],
                           env=dict(os.environ), logs=logs_dir))  # fmt: skip

    tree = tmp_path_factory.mktemp("monitoring")
    worker_target = watched.worker_metrics_url.removeprefix("http://").removesuffix("/metrics")
    targets = Targets(api=(watched.base_url.removeprefix("http://"),), workers=(worker_target,),
                      redis_exporter=(f"127.0.0.1:{redis_port}",), node_exporter=(f"127.0.0.1:{node_port}",),
                      gpu_exporter=(f"127.0.0.1:{gpu.server_port}",))  # fmt: skip
    write_tree(tree, MonitoringConfig(targets=targets, scrape_interval="1s", evaluation_interval="1s"))
    (tree / "prometheus/secrets").mkdir()
    (tree / "prometheus/secrets/api_token").write_text(watched.token)
    url = f"http://127.0.0.1:{prometheus_port}"
    exporters.append(spawn("prometheus", [required("prometheus"),
                                          f"--config.file={tree / 'prometheus/prometheus.yml'}",
                                          f"--storage.tsdb.path={tree / 'data'}",
                                          f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                           env=dict(os.environ), logs=logs_dir))  # fmt: skip
    try:
        wait_until(lambda: http_ok(url + "/-/ready"), timeout=60, what="Prometheus ready")
        wait_until(lambda: all_targets_up(url), timeout=60, what="every scrape target up")
        yield url
    finally:
        for process in reversed(exporters):
            process.stop()
        gpu.shutdown()


def all_targets_up(url: str) -> bool:
    active = requests.get(url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return len(active) == 5 and all(target["health"] == "up" for target in active)


def query(url: str, expr: str) -> list[dict]:
    answer = requests.get(url + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


def workload(stack) -> None:
    """A bit of everything a dashboard shows: four dialects, whole and streamed answers, images,
    client mistakes, a wrong token, a client that leaves, a job that expires and one refused, and
    an API key's jobs, one refused for its scopes."""
    auth, url = stack.auth, stack.url
    assert requests.post(url("/completion"), json={"prompt": "hi", "n_predict": 8}, headers=auth, timeout=30).ok
    studio = {"name": "studio", "scopes": ["llm", "images"], "limits": {"rpm": 10, "parallel": 2}}
    key = requests.post(url("/admin/keys"), json=studio, headers=auth, timeout=10).json()["key"]
    keyed = {"Authorization": f"Bearer {key}"}
    assert requests.post(url("/completion"), json={"prompt": "hi", "n_predict": 4}, headers=keyed, timeout=30).ok
    refused = requests.post(url("/v1/embeddings"), json={"input": "hi"}, headers=keyed, timeout=10)
    assert refused.status_code == 403
    picture = {"prompt": "a red barn", "steps": 3, "width": 64, "height": 64, "batch_size": 2}
    images = requests.post(url("/sdapi/v1/txt2img"), json=picture, auth=("unity", key), timeout=120).json()["images"]
    assert len(images) == 2
    with openai.OpenAI(base_url=url("/v1"), api_key=stack.token, max_retries=0) as sdk:
        chunks = sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=8, stream=True)  # fmt: skip
        assert list(chunks)
    with ollama.Client(host=stack.base_url, headers=auth) as sdk:
        assert list(sdk.generate(model="tiny", prompt="hi", options={"num_predict": 8}, stream=True))
    assert requests.post(url("/completion"), json={"prompt": 5}, headers=auth, timeout=10).status_code == 400
    assert requests.get(url("/v1/nothing-here"), headers=auth, timeout=10).status_code == 404
    assert requests.get(url("/props"), headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401

    body = orjson.dumps({"prompt": "a tale", "stream": True, "n_predict": 3000, "ignore_eos": True})
    status, _, chunks = post_chunks(url("/completion"), body, auth)
    assert status == 200
    next(chunks)
    chunks.close()  # the client leaves: its job is cancelled

    worker = stack.process("watched-worker").popen
    os.kill(worker.pid, signal.SIGSTOP)  # nothing is taken off the queue
    try:
        waiting = threading.Thread(target=requests.post, args=(url("/completion"),),
                                   kwargs={"json": {"prompt": "hi"}, "headers": auth, "timeout": 30})  # fmt: skip
        waiting.start()  # waits past its 1 s deadline: expired
        time.sleep(0.3)
        refused = requests.post(url("/completion"), json={"prompt": "hi"}, headers=auth, timeout=10)
        assert refused.status_code == 503  # QUEUE_CAP=1 is taken
        waiting.join(timeout=30)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert requests.post(url("/completion"), json={"prompt": "hi", "n_predict": 8}, headers=auth, timeout=30).ok


@pytest.fixture(scope="module")
def after_workload(watched, prometheus) -> str:
    # Twice: a histogram's series appears with its first observation, and rate() sees increases
    # only from a series' second scrape on.
    for _ in range(2):
        workload(watched)
        time.sleep(3)  # a few scrapes and rule evaluations
    return prometheus


def has_data(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_every_dashboard_panel_shows_data(after_workload):
    empty = [f"{shown.dashboard} / {shown.panel}: {shown.expr}" for shown in panel_queries(COMMITTED)
             if not has_data(query(after_workload, shown.concrete("1m")))]  # fmt: skip
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_alert_watches_a_signal_that_exists(after_workload):
    empty = [rule.name for rule in ALERT_RULES if not has_data(query(after_workload, rule.signal))]
    assert not empty, f"alerts whose signal has no data: {empty}"
    rules = requests.get(after_workload + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in rules for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in alert_rules(COMMITTED)}
    assert all(rule["health"] == "ok" for rule in loaded.values()), loaded


def test_every_dashboard_variable_has_values(after_workload):
    for uid, dashboard in dashboards(COMMITTED).items():
        for variable in dashboard["templating"].get("list", []):
            metric, label = variable["query"].removeprefix("label_values(").removesuffix(")").split(", ")
            values = requests.get(f"{after_workload}/api/v1/label/{label}/values", params={"match[]": metric},
                                  timeout=10).json()["data"]  # fmt: skip
            assert values, f"{uid}: ${variable['name']} would offer nothing"


def test_the_workload_is_what_prometheus_counted(after_workload):
    def total(expr: str) -> float:
        return sum(float(series["value"][1]) for series in query(after_workload, expr))

    assert total('sum(velesio_queue_rejected_jobs_total{model="tiny"})') == 2
    assert total('sum(velesio_queue_expired_jobs_total{model="tiny"})') == 2
    assert total('sum(velesio_queue_cancelled_jobs_total{model="tiny"})') == 2
    assert total("sum(velesio_api_auth_failures_total)") == 2
    assert total('sum(velesio_api_requests_total{dialect="ollama",route="/api/generate",status="200"})') == 2
    assert total('sum(velesio_worker_images_total{kind="txt2img"})') == 4
    assert total("count(up == 1)") == 5
