"""prometheus.yml and its file-based target lists.

Paths in prometheus.yml are relative to it, as Prometheus resolves them, so the same tree works
from a checkout (``prometheus --config.file=monitoring/prometheus/prometheus.yml``) and mounted
in a container.
"""

from __future__ import annotations

from typing import Any

from .config import MonitoringConfig, Targets

RULES_FILE = "rules/velesio.rules.yml"
API_TOKEN_FILE = "secrets/api_token"

#: (job name, the Targets field listing its targets)
SCRAPE_JOBS = (
    ("velesio-api", "api"),
    ("velesio-worker", "workers"),
    ("redis", "redis_exporter"),
    ("node", "node_exporter"),
    ("gpu", "gpu_exporter"),
)


def target_file(job: str) -> str:
    return f"targets/{job}.yml"


def prometheus_config(config: MonitoringConfig) -> dict[str, Any]:
    jobs = []
    for job, _targets in SCRAPE_JOBS:
        scrape: dict[str, Any] = {"job_name": job, "file_sd_configs": [{"files": [target_file(job)]}]}
        if job == "velesio-api":
            # The API's /metrics is behind its tokens, like the rest of llama.cpp's API.
            scrape["authorization"] = {"type": "Bearer", "credentials_file": API_TOKEN_FILE}
        jobs.append(scrape)
    return {
        "global": {
            "scrape_interval": config.scrape_interval,
            "evaluation_interval": config.evaluation_interval,
        },
        "rule_files": [RULES_FILE],
        "scrape_configs": jobs,
    }


def target_files(targets: Targets) -> dict[str, list[dict[str, Any]]]:
    """Each job's file-based discovery list, by path relative to prometheus.yml."""
    return {target_file(job): [{"targets": list(getattr(targets, field))}] for job, field in SCRAPE_JOBS}
