"""The processes themselves: startup checks, standalone mode, and make up's launcher."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.llmunity import v2_parse_cumulative
from tests.support.metrics import scrape
from tests.support.processes import free_port, http_ok, service_env, spawn, start_worker, wait_until
from tests.support.sd import png_of


@pytest.mark.parametrize(
    ("module", "env", "variable"),
    [
        ("velesio_worker.main", {"RUN_LLAMACPP": "true", "RUN_OLLAMA": "true"}, "RUN_OLLAMA"),
        ("velesio_worker.main", {"GPU_LAYERS": "lots"}, "GPU_LAYERS"),
        ("velesio_worker.main", {"LLAMA_SLOTS": "0"}, "LLAMA_SLOTS"),
        ("velesio_worker.main", {"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ("velesio_worker.main", {"LLAMA_SERVER_URL": "localhost:8080"}, "LLAMA_SERVER_URL"),
        ("velesio_worker.main", {"API": "maybe"}, "API"),
        ("velesio_worker.main", {"MODEL_PATH": "/nonexistent/model.gguf"}, "MODEL_PATH"),
        ("velesio_worker.main", {"RUN_LLAMACPP": "false"}, "RUN_LLAMACPP"),
        (
            "velesio_worker.main",
            {"RUN_SD": "true", "RUN_LLAMACPP": "false", "MODELS_DIR": "/nonexistent"},
            "SD_MODEL_URL",
        ),
        pytest.param(
            "velesio_worker.main",
            {"RUN_SD": "true", "RUN_LLAMACPP": "false", "SD_DEVICE": "cuda"},
            "SD_DEVICE",
            marks=pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a GPU is here"),
        ),
        ("velesio_api.main", {}, "API_TOKENS"),
        ("velesio_api.main", {"API_TOKENS": "t", "JOB_DEADLINE": "-1"}, "JOB_DEADLINE"),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_line_naming_it(module, env, variable):
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=service_env(**{"REDIS_URL": "redis://127.0.0.1:1/0", **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"velesio: {variable}: ")
    assert "; " in lines[0]  # problem; fix


def standalone_env(model, port: int, **settings: str) -> dict[str, str]:
    # A Redis URL nobody listens on: standalone mode must not need it.
    return service_env(**{"API": "false", "API_TOKENS": "standalone-token", "MODEL_PATH": str(model),
                          "LLM_PORT": str(port), "API_HOST": "127.0.0.1", "REDIS_URL": "redis://127.0.0.1:1/0",
                          "LLAMA_SLOTS": "1", "LLAMA_SERVER_ARGS": "--threads 1", **settings})  # fmt: skip


def test_standalone_worker_serves_llama_cpp_without_redis(tiny_model, logs_dir):
    port = free_port()
    env = standalone_env(tiny_model, port, LLAMA_SLOTS="2")
    worker = start_worker(env, logs_dir, "standalone")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer standalone-token"}
    try:
        wait_until(lambda: http_ok(base + "/health"), timeout=120, what="the standalone worker serving")
        assert requests.post(base + "/template", json={}, headers=auth).json() == {"template": "chatml"}
        stream = requests.post(base + "/completion", json={"prompt": "hi", "n_predict": 6, "stream": True},
                               headers=auth, timeout=30)  # fmt: skip
        assert stream.status_code == 200 and v2_parse_cumulative(stream.text)
        whole = requests.post(base + "/completion", json={"prompt": "hi", "n_predict": 6}, headers=auth).json()
        assert whole["tokens_predicted"] == 6
        embedding = requests.post(base + "/embeddings", json={"content": "hi"}, headers=auth).json()["embedding"]
        assert len(embedding) == 64
        assert requests.post(base + "/completion", json={"prompt": "hi"}).status_code == 401
        # Metrics on the worker's own port, as a queue worker has them, and on the app's /metrics.
        measured = scrape(f"http://127.0.0.1:{env['METRICS_PORT']}/metrics")
        assert measured.value("velesio_worker_jobs_total", kind="completion", outcome="ok") == 2
        assert measured.value("velesio_worker_generated_tokens_total") >= 12
        assert scrape(base + "/metrics", auth).value("velesio_api_requests_total", route="/completion") >= 2
    finally:
        assert worker.stop(timeout=30) == 0


def test_a_taken_metrics_port_stops_the_worker_with_one_line(tiny_model, logs_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = standalone_env(tiny_model, free_port(), METRICS_PORT=str(taken.getsockname()[1]))
        result = subprocess.run([sys.executable, "-m", "velesio_worker.main"], env=env, capture_output=True,
                                text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("velesio: METRICS_PORT: "), result.stderr


def test_with_metrics_off_nothing_is_measured_or_served(tiny_model, logs_dir):
    port = free_port()
    env = standalone_env(tiny_model, port, METRICS="false")
    worker = start_worker(env, logs_dir, "unmeasured")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer standalone-token"}
    try:
        wait_until(lambda: http_ok(base + "/health"), timeout=120, what="the unmeasured worker serving")
        assert requests.post(base + "/completion", json={"prompt": "hi", "n_predict": 2}, headers=auth, timeout=30).ok
        assert requests.get(base + "/metrics", headers=auth, timeout=10).status_code == 404
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{env['METRICS_PORT']}/metrics", timeout=5)
    finally:
        assert worker.stop(timeout=30) == 0


def test_make_up_serves_the_embedded_default_and_stops_cleanly(tmp_path, logs_dir):
    api_port = free_port()
    env = service_env()
    env.update(API_PORT=str(api_port), MODELS_DIR=str(tmp_path / "models"), LLAMA_SLOTS="2",
               LLAMA_SERVER_ARGS="--threads 1", PYTHONUNBUFFERED="1")  # fmt: skip
    stack = spawn("make-up", [sys.executable, "-m", "velesio_core.stack"], env=env, logs=logs_dir)
    try:
        wait_until(lambda: "velesio is up" in stack.log(), timeout=180, what="make up's banner")
        log = stack.log()
        token = re.search(r"token:\s+(\S+)", log).group(1)
        assert f"http://127.0.0.1:{api_port}" in log and "curl" in log
        assert (tmp_path / "models" / "text" / "velesio-tiny.gguf").is_file()
        answer = requests.post(f"http://127.0.0.1:{api_port}/completion", json={"prompt": "hi", "n_predict": 4},
                               headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        assert answer.status_code == 200 and answer.json()["tokens_predicted"] == 4
        # A newcomer can try an image at once: the tiny pipeline behind AUTOMATIC1111's API.
        assert (tmp_path / "models" / "image" / "models" / "Stable-diffusion" / "velesio-tiny-sd").is_dir()
        image = requests.post(f"http://127.0.0.1:{api_port}/sdapi/v1/txt2img", auth=("unity", token), timeout=60,
                              json={"prompt": "a wall", "steps": 2, "width": 64, "height": 64})  # fmt: skip
        assert image.status_code == 200, image.text
        assert png_of(image.json()["images"][0]).size == (64, 64)
    finally:
        stack.popen.send_signal(signal.SIGINT)  # Ctrl-C
        assert stack.popen.wait(timeout=60) == 0
    assert not http_ok(f"http://127.0.0.1:{api_port}/health")


#: velesio's own log lines (logs.py's format, and gunicorn's for the API's server) at INFO: a line
#: of any other shape is a library talking past velesio (a Python warning, a progress bar, a
#: library's logger with its own format), and a WARNING before the banner is one too.
_OWN_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \S+: "  # velesio_core.logs
    r"|\[[^\]]+\] \[\d+\] \[INFO\] "  # gunicorn, serving the API
)


def test_make_up_prints_only_velesio_lines_before_its_banner_and_stops_quietly(tmp_path, logs_dir):
    api_port = free_port()
    models = str(tmp_path / "models")
    env = service_env(API_PORT=str(api_port), MODELS_DIR=models, LLAMA_SLOTS="2", LLAMA_SERVER_ARGS="--threads 1")
    stack = spawn("make-up-quiet", [sys.executable, "-m", "velesio_core.stack"], env=env, logs=logs_dir)
    try:
        wait_until(lambda: "velesio is up" in stack.log(), timeout=180, what="make up's banner")
    finally:
        stack.popen.send_signal(signal.SIGINT)  # Ctrl-C
        assert stack.popen.wait(timeout=60) == 0
    before_banner, _, after_banner = stack.log().partition("velesio is up")
    foreign = [line for line in before_banner.splitlines() if line.strip() and not _OWN_LINE.match(line)]
    assert not foreign, "\n".join(foreign)
    assert "Warning" not in before_banner and "it/s]" not in before_banner
    # Stopping: Redis outlives the processes that use it, so nothing complains about losing it.
    troubles = [line for line in after_banner.splitlines() if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line)]
    assert not troubles, "\n".join(troubles)
