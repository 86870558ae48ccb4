"""The model downloader against a real HTTP server on 127.0.0.1 that honours Range requests,
and can cut a connection mid-file, refuse, redirect and count what it served."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.processes import service_env
from velesio_core.download import DownloadError, Target, fetch, fetch_missing
from velesio_core.settings import Settings

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
TOKEN = "gated-secret-token"


class _Files(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server, path = self.server, self.path.split("?")[0]
        with server.lock:
            server.requests[path] += 1
            server.auth_seen.append((self.headers.get("Host", ""), self.headers.get("Authorization")))
            attempt = server.requests[path]
        if path.startswith("/missing"):
            return self._status(404)
        if path.startswith("/gated") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._status(401)
        if path.startswith("/flaky") and attempt <= 2:
            return self._status(503)
        if path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{server.server_port}/{path.removeprefix('/redirect/')}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not path.startswith("/norange"):
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                return self._status(416)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        if path.startswith("/api/download"):
            self.send_header("Content-Disposition", 'attachment; filename="from-header.safetensors"')
        self.end_headers()
        cut = path.startswith("/cut") and attempt == 1
        sent = 0
        for offset in range(0, len(body), 256 * 1024):
            if cut and sent >= len(body) // 2:
                self.connection.shutdown(2)  # the connection drops mid-file
                return None
            chunk = body[offset : offset + 256 * 1024]
            self.wfile.write(chunk)
            sent += len(chunk)
            with server.lock:
                server.bytes_sent[path] += len(chunk)
            if path.startswith("/slow"):
                time.sleep(0.02)
        return None

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Files)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.auth_seen: list[tuple[str, str | None]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"


@pytest.fixture
def server():
    running = _Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def test_fetches_into_a_folder_under_the_url_name_and_keeps_the_digest(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="velesio_core.download")
    path = fetch(Target("SD_MODEL_URL", server.url("/files/model.safetensors"), tmp_path, DIGEST), backoff_s=0)
    assert path == tmp_path / "model.safetensors" and path.read_bytes() == PAYLOAD
    assert (tmp_path / "model.safetensors.sha256").read_text().split()[0] == DIGEST
    assert not list(tmp_path.glob(".*.part"))
    assert any("100.0% of 3.0 MiB" in record.getMessage() for record in caplog.records)
    # Only when missing: a second call asks the server nothing.
    fetch(Target("SD_MODEL_URL", server.url("/files/model.safetensors"), tmp_path), backoff_s=0)
    assert server.requests["/files/model.safetensors"] == 1


def test_a_connection_cut_mid_file_resumes_with_a_range_request(server, tmp_path):
    path = fetch(Target("SD_MODEL_URL", server.url("/cut/model.safetensors#sha256=" + DIGEST), tmp_path), backoff_s=0)
    assert path.read_bytes() == PAYLOAD
    assert server.requests["/cut/model.safetensors"] == 2
    # The second request asked only for what was missing.
    assert server.bytes_sent["/cut/model.safetensors"] < len(PAYLOAD) * 1.1


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    part = tmp_path / ".model.safetensors.part"
    part.write_bytes(b"x" * 1000)  # a stale half download
    path = fetch(Target("SD_MODEL_URL", server.url("/norange/model.safetensors"), tmp_path, DIGEST), backoff_s=0)
    assert path.read_bytes() == PAYLOAD


def test_transient_errors_are_retried_with_backoff(server, tmp_path):
    path = fetch(Target("VAE_URL", server.url("/flaky/vae.safetensors"), tmp_path, DIGEST), backoff_s=0.01)
    assert path.read_bytes() == PAYLOAD and server.requests["/flaky/vae.safetensors"] == 3


def test_a_wrong_checksum_fails_and_removes_the_file(server, tmp_path):
    with pytest.raises(DownloadError) as failure:
        fetch(Target("SD_MODEL_URL", server.url("/files/model.safetensors"), tmp_path, "0" * 64), backoff_s=0)
    assert str(failure.value).startswith("SD_MODEL_URL: model.safetensors has sha256 ")
    assert "\n" not in str(failure.value) and "deleted" in str(failure.value)
    assert list(tmp_path.iterdir()) == [tmp_path / ".model.safetensors.lock"]


def test_a_404_fails_at_once_with_one_line(server, tmp_path):
    with pytest.raises(DownloadError) as failure:
        fetch(Target("LORA_URL", server.url("/missing/style.safetensors?sig=abc"), tmp_path), backoff_s=0)
    assert str(failure.value) == (
        f"LORA_URL: http://127.0.0.1:{server.server_port}/missing/style.safetensors does not exist (HTTP 404); "
        "check the URL"
    )
    assert server.requests["/missing/style.safetensors"] == 1  # not retried


def test_a_gated_file_needs_the_token_which_never_follows_a_redirect(server, tmp_path):
    target = Target("SD_MODEL_URL", server.url("/gated/model.safetensors"), tmp_path)
    with pytest.raises(DownloadError, match=r"HTTP 401\); set DOWNLOAD_TOKEN"):
        fetch(target, backoff_s=0)
    assert fetch(target, token=TOKEN, backoff_s=0).read_bytes() == PAYLOAD
    # A redirect to another host (as Hugging Face does to its CDN) goes there without the token.
    fetch(Target("SD_MODEL_URL", server.url("/redirect/other/model.safetensors"), tmp_path / "r"), token=TOKEN)
    assert (f"127.0.0.1:{server.server_port}", f"Bearer {TOKEN}") in server.auth_seen
    assert (f"localhost:{server.server_port}", None) in server.auth_seen
    assert (f"localhost:{server.server_port}", f"Bearer {TOKEN}") not in server.auth_seen


def test_a_full_disk_fails_with_one_line(server, tmp_path):
    (tmp_path / ".model.safetensors.part").symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(DownloadError, match=r"^SD_MODEL_URL: the disk holding .* is full; free some space"):
        fetch(Target("SD_MODEL_URL", server.url("/files/model.safetensors"), tmp_path), backoff_s=0)


def test_a_url_without_a_file_name_takes_the_servers(server, tmp_path):
    path = fetch(Target("SD_MODEL_URL", server.url("/api/download/models/123"), tmp_path, DIGEST), backoff_s=0)
    assert path.name == "from-header.safetensors" and path.read_bytes() == PAYLOAD


def test_two_workers_sharing_a_volume_download_once(server, tmp_path):
    """Two processes, as two workers on one volume would be: one downloads, the other waits for it."""
    url = server.url("/slow/model.safetensors")
    command = [sys.executable, "-m", "velesio_core.download", url, str(tmp_path), "--sha256", DIGEST]
    workers = [subprocess.Popen(command, env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(2)]  # fmt: skip
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all(out.decode().strip() == str(tmp_path / "model.safetensors") for out, _ in outputs)
    assert server.requests["/slow/model.safetensors"] == 1
    assert (tmp_path / "model.safetensors").read_bytes() == PAYLOAD


def test_the_worker_settings_name_what_to_fetch_and_where(server, tmp_path):
    env = {
        "MODELS_DIR": str(tmp_path / "models"),
        "RUN_SD": "true",
        "MODEL_URL": server.url("/files/llm.gguf"),
        "MODEL_SHA256": DIGEST,
        "SD_MODEL_URL": server.url("/files/checkpoint.safetensors#sha256=" + DIGEST),
        "LORA_URL": server.url("/files/style.safetensors"),
        "VAE_URL": server.url("/files/vae.safetensors"),
    }
    paths = fetch_missing(Settings.from_env(env))
    image = tmp_path / "models" / "image" / "models"
    assert paths == [
        tmp_path / "models" / "text" / "model.gguf",
        image / "Stable-diffusion" / "checkpoint.safetensors",
        image / "Lora" / "style.safetensors",
        image / "VAE" / "vae.safetensors",
    ]
    assert all(path.read_bytes() == PAYLOAD for path in paths)


def test_a_worker_whose_download_fails_stops_with_one_line_and_no_secret(server, tmp_path):
    missing = server.url("/missing/model.safetensors")
    env = service_env(MODELS_DIR=str(tmp_path), RUN_SD="true", RUN_LLAMACPP="false", DOWNLOAD_TOKEN="s3cret-value",
                      SD_MODEL_URL=missing, REDIS_URL="redis://127.0.0.1:1/0")  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "velesio_worker.main"], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert lines == [f"velesio: SD_MODEL_URL: {server.url('/missing/model.safetensors')} does not exist (HTTP 404); "
                     "check the URL"]  # fmt: skip
    assert "s3cret-value" not in result.stderr + result.stdout
