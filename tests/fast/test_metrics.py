"""GET /metrics: the API's own measurements, in Prometheus' text format, behind the API's tokens.

The fast layer (see tests/support/fake_backend.py); tests/e2e/test_metrics.py scrapes the real
processes, with Prometheus itself in tests/monitoring.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_backend import MODEL


def requests_counted(stack, **labels: str) -> float:
    """The count of the one series with these labels (name them all: the registry is shared)."""
    scrape = stack.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            if sample.name == "velesio_api_requests_total" and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


def test_every_request_is_counted_by_dialect_route_and_status(stack):
    route = {"dialect": "openai", "route": "/v1/chat/completions", "method": "POST"}
    before = {status: requests_counted(stack, status=status, **route) for status in ("200", "400")}
    stack.post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    stack.post("/v1/chat/completions", {"model": MODEL, "messages": []})
    assert requests_counted(stack, status="200", **route) == before["200"] + 1
    assert requests_counted(stack, status="400", **route) == before["400"] + 1


def test_an_unknown_path_counts_under_one_route_label(stack):
    unmatched = {"dialect": "llamacpp", "route": "other", "method": "GET", "status": "404"}
    before = requests_counted(stack, **unmatched)
    stack.get("/probe/a")
    stack.get("/probe/b")
    assert requests_counted(stack, **unmatched) == before + 2


def test_metrics_need_a_token_and_can_be_turned_off(stack, make_stack):
    assert stack.get("/metrics", auth=None).status_code == 401
    assert make_stack(METRICS="false").get("/metrics").status_code == 404
