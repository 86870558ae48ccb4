"""velesio's alert rules.

Each rule names its ``signal`` beside its expression: the signal is what the rule watches, and it
must return data from a live deployment (tests check that against a real Prometheus); the full
expression, threshold included, is what fires (``promtool test rules`` checks that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    signal: str
    for_: str
    severity: str
    summary: str
    description: str

    @classmethod
    def threshold(cls, name: str, signal: str, condition: str, for_: str, severity: str, summary: str,
                  description: str) -> AlertRule:  # fmt: skip
        """A rule that fires when ``signal`` meets ``condition`` (e.g. "> 30")."""
        return cls(name, f"{signal} {condition}", signal, for_, severity, summary, description)

    def to_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule.threshold(
        "VelesioApiDown",
        'up{job="velesio-api"}',
        "== 0",
        "1m",
        "critical",
        "velesio's API at {{ $labels.instance }} does not answer scrapes",
        "Prometheus could not scrape {{ $labels.instance }} for a minute: the API is down, or its token "
        "in prometheus/secrets/api_token is wrong.",
    ),
    AlertRule.threshold(
        "VelesioRedisUnreachable",
        "min(velesio_redis_up)",
        "== 0",
        "1m",
        "critical",
        "velesio's API cannot reach Redis",
        "No job can be queued while Redis is unreachable; clients get 503s.",
    ),
    AlertRule(
        "VelesioNoWorker",
        # velesio_workers has a series per served model, so none at all means no live worker;
        # only while the API reaches Redis, or it would be the API or Redis that is down.
        "absent(velesio_workers) and on() max(velesio_redis_up) == 1",
        "velesio_workers",
        "1m",
        "critical",
        "No velesio worker is serving any model",
        "The API reaches Redis but no worker has a fresh heartbeat: every generation waits and then fails.",
    ),
    AlertRule.threshold(
        "VelesioWorkerDown",
        'up{job="velesio-worker"}',
        "== 0",
        "2m",
        "warning",
        "velesio worker {{ $labels.instance }} does not answer scrapes",
        "The worker's METRICS_PORT did not answer for two minutes: the worker is down or unreachable.",
    ),
    AlertRule.threshold(
        "VelesioWorkerHeartbeatStale",
        "time() - velesio_worker_heartbeat_timestamp_seconds",
        "> 30",
        "1m",
        "warning",
        "velesio worker {{ $labels.instance }} stopped its heartbeat",
        "The worker still answers scrapes, but has not refreshed its card in Redis for over 30 s, so the "
        "API no longer routes jobs to it.",
    ),
    AlertRule.threshold(
        "VelesioBackendDown",
        "velesio_worker_backend_up",
        "== 0",
        "2m",
        "critical",
        "The {{ $labels.backend }} backend of worker {{ $labels.instance }} is down",
        "The worker's backend (llama-server, Ollama) fails its health check; its jobs fail.",
    ),
    AlertRule.threshold(
        "VelesioBackendRestarts",
        "increase(velesio_worker_backend_restarts_total[15m])",
        "> 0",
        "0m",
        "warning",
        "The {{ $labels.backend }} backend of worker {{ $labels.instance }} restarted",
        "The worker restarted its backend {{ $value | humanize }} times in 15 minutes (a crash, or out of "
        "GPU memory); jobs running at the time failed.",
    ),
    AlertRule.threshold(
        "VelesioQueueBacklog",
        "max by (model, kind) (velesio_queue_oldest_job_age_seconds)",
        "> 30",
        "2m",
        "warning",
        "Jobs for {{ $labels.model }} wait over 30 s in the {{ $labels.kind }} queue",
        "The oldest waiting job is {{ $value | humanizeDuration }} old: workers cannot keep up. Add workers "
        "or slots (LLAMA_SLOTS).",
    ),
    AlertRule.threshold(
        "VelesioQueueWaitHigh",
        "histogram_quantile(0.95, sum by (le, model) (rate(velesio_queue_wait_seconds_bucket[5m])))",
        "> 10",
        "10m",
        "warning",
        "Jobs for {{ $labels.model }} wait long for a worker",
        "95% of jobs waited up to {{ $value | humanizeDuration }} before a worker started them.",
    ),
    AlertRule.threshold(
        "VelesioJobsRefused",
        "sum by (model) (rate(velesio_queue_rejected_jobs_total[5m]))",
        "> 0",
        "5m",
        "warning",
        "velesio refuses jobs for {{ $labels.model }}: its queue is full",
        "Clients get 503s with Retry-After because QUEUE_CAP jobs already wait. Add workers, or raise "
        "QUEUE_CAP if a longer wait is acceptable.",
    ),
    AlertRule.threshold(
        "VelesioHighErrorRate",
        '(sum(rate(velesio_api_requests_total{status=~"5.."}[5m])) or vector(0))'
        " / sum(rate(velesio_api_requests_total[5m]))",
        "> 0.05",
        "5m",
        "critical",
        "Over 5% of velesio's requests fail",
        "{{ $value | humanizePercentage }} of requests were answered with a 5xx in the last 5 minutes.",
    ),
    AlertRule.threshold(
        "VelesioSlowFirstToken",
        "histogram_quantile(0.95, sum by (le, dialect) (rate(velesio_api_time_to_first_token_seconds_bucket[5m])))",
        "> 5",
        "10m",
        "warning",
        "Streams of the {{ $labels.dialect }} dialect wait long for their first token",
        "95% of streams got their first token within {{ $value | humanizeDuration }}; over 5 s feels broken "
        "to a player. Queue wait and long prompts both count.",
    ),
)


def rules_file() -> dict[str, Any]:
    return {"groups": [{"name": "velesio", "rules": [rule.to_rule() for rule in ALERT_RULES]}]}
