"""The console's server side: its static files under /ui (public, with a strict CSP) and the admin
routes its live views use (/admin/cluster, /admin/events, DELETE /admin/jobs/{id}), which need a key.

The page itself is driven in a real browser by tests/browser (make test-browser).
"""

from __future__ import annotations

import re
import threading
import time
from importlib import resources

import orjson
import pytest
import requests

from tests.support.processes import Stack

STATIC = resources.files("velesio_api.console").joinpath("static")
LONG = {"prompt": "a long tale", "n_predict": 100000, "ignore_eos": True, "stream": True}


def test_the_page_is_public_and_served_with_a_strict_csp(stack):
    redirect = requests.get(stack.url("/ui"), allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].endswith("/ui/")
    page = requests.get(stack.url("/ui/"), timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
    script = requests.get(stack.url("/ui/app.js"), timeout=10)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert requests.get(stack.url("/ui/app.css"), timeout=10).headers["Content-Type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/ui/missing.js", "/ui/..%2Fapp.py", "/ui/%2e%2e"])
def test_only_the_consoles_own_files_are_served(stack, path):
    response = requests.get(stack.url(path), timeout=10)
    assert response.status_code == 404
    assert "error" in response.json()


def test_only_get_is_public_under_ui(stack):
    assert requests.post(stack.url("/ui/"), timeout=10).status_code == 401


def test_the_page_loads_nothing_from_elsewhere_and_has_no_inline_code():
    html = STATIC.joinpath("index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    for name in ("index.html", "app.js", "app.css"):
        text = STATIC.joinpath(name).read_text()
        assert not re.search(r"""(src|href|import|url)\s*[=(]?\s*["']?(https?:)?//""", text), name


@pytest.mark.parametrize(
    "call", [("GET", "/admin/cluster"), ("GET", "/admin/events"), ("DELETE", "/admin/jobs/x"), ("GET", "/admin/me")]
)
def test_the_admin_routes_need_a_key(stack, call):
    method, path = call
    response = requests.request(method, stack.url(path), headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert response.status_code == 401


def test_the_cluster_shows_the_worker_and_its_queues(stack):
    cluster = requests.get(stack.url("/admin/cluster"), headers=stack.auth, timeout=10).json()
    models = requests.get(stack.url("/v1/models"), timeout=10).json()["data"]
    [worker] = [w for w in cluster["workers"] if w["alive"]]
    assert [m["id"] for m in worker["models"]] == [m["id"] for m in models]
    assert worker["models"][0]["slots"] == 8 and worker["heartbeat_age_s"] < 15
    assert {q["name"] for q in cluster["queues"]} >= set(worker["queues"])


def test_events_stream_the_cluster_at_most_once_a_second(stack):
    started = time.monotonic()
    with requests.get(stack.url("/admin/events"), headers=stack.auth, stream=True, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        snapshots = []
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                snapshots.append(orjson.loads(line[6:]))
            if len(snapshots) == 3:
                break
    # Three snapshots, two waits of a second between them.
    assert time.monotonic() - started >= 2
    assert snapshots[2]["at"] > snapshots[0]["at"] and snapshots[0]["workers"]


def _cluster_job(stack: Stack, job_id: str | None = None) -> list[dict]:
    jobs = requests.get(stack.url("/admin/cluster"), headers=stack.auth, timeout=10).json()["jobs"]
    return [job for job in jobs if job_id is None or job["id"] == job_id]


def test_a_running_job_shows_and_cancelling_it_ends_its_request(stack):
    outcome: dict = {}

    def generate() -> None:
        with requests.post(stack.url("/completion"), json=LONG, headers=stack.auth, stream=True, timeout=60) as resp:
            outcome["body"] = b"".join(resp.iter_content(None))

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (running := [job for job in _cluster_job(stack) if job["state"] == "running"]):
        assert time.monotonic() < deadline, "the job never showed as running"
        time.sleep(0.2)
    [job] = running
    assert job["kind"] == "completion" and job["position"] is None and job["age_s"] >= 0
    cancelled = requests.delete(stack.url(f"/admin/jobs/{job['id']}"), headers=stack.auth, timeout=10)
    assert cancelled.status_code == 200 and cancelled.json() == {"id": job["id"], "cancelled": True}
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert b"cancelled by an operator" in outcome["body"]
    deadline = time.monotonic() + 10
    while _cluster_job(stack, job["id"]):
        assert time.monotonic() < deadline, "the cancelled job stayed listed"
        time.sleep(0.2)
    errors = requests.get(stack.url("/admin/cluster"), headers=stack.auth, timeout=10).json()["errors"]
    assert any(error["job_id"] == job["id"] and error["code"] == 409 for error in errors)


def test_cancelling_an_unknown_job_is_a_404(stack):
    response = requests.delete(stack.url("/admin/jobs/no-such-job"), headers=stack.auth, timeout=10)
    assert response.status_code == 404 and "no-such-job" in response.json()["error"]["message"]


def test_me_says_who_the_key_is(stack):
    me = requests.get(stack.url("/admin/me"), headers=stack.auth, timeout=10).json()
    assert me["admin"] is True and me["name"] == "API_TOKENS" and "admin" in me["scopes"]
    wrong = requests.get(stack.url("/admin/me"), headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401
