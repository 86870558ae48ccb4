"""What a rendered monitoring tree depends on: where the things to scrape are, and how often."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The Prometheus datasource every dashboard panel queries (provisioned with this uid).
DATASOURCE_UID = "velesio-prometheus"
#: Where the compose file mounts things inside its containers.
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards"


@dataclass(frozen=True)
class Targets:
    """host:port of each scrape job's targets. The defaults are one machine running everything
    (``make up``, the compose file's host network)."""

    api: tuple[str, ...] = ("localhost:8000",)
    workers: tuple[str, ...] = ("localhost:8001",)
    redis_exporter: tuple[str, ...] = ("localhost:9121",)
    node_exporter: tuple[str, ...] = ("localhost:9100",)
    gpu_exporter: tuple[str, ...] = ("localhost:9400",)


@dataclass(frozen=True)
class MonitoringConfig:
    targets: Targets = field(default_factory=Targets)
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    prometheus_url: str = "http://localhost:9090"
