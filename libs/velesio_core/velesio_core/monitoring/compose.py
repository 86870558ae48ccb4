"""A compose file that runs Prometheus, Grafana and the exporters beside a velesio host.

Everything uses the host's network, so the default targets (localhost) reach a velesio started
with ``make up`` or by its services on the same machine. The GPU exporter runs only with
``--profile gpu`` (it needs the NVIDIA container toolkit).
"""

from __future__ import annotations

from typing import Any

from .config import GRAFANA_DASHBOARDS_DIR

IMAGES = {
    "prometheus": "prom/prometheus:v2.55.1",
    "grafana": "grafana/grafana:11.6.0",
    "redis-exporter": "oliver006/redis_exporter:v1.66.0",
    "node-exporter": "prom/node-exporter:v1.8.2",
    "dcgm-exporter": "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04",
}


def compose_file() -> dict[str, Any]:
    return {
        "name": "velesio-monitoring",
        "services": {
            "prometheus": {
                "image": IMAGES["prometheus"],
                "network_mode": "host",
                "restart": "unless-stopped",
                "command": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=30d",
                    "--web.listen-address=:9090",
                ],
                "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus"],
            },
            "grafana": {
                "image": IMAGES["grafana"],
                "network_mode": "host",
                "restart": "unless-stopped",
                "environment": {
                    "GF_SERVER_HTTP_PORT": "3000",
                    "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD}",
                    "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{GRAFANA_DASHBOARDS_DIR}/velesio-overview.json",
                },
                "volumes": [
                    "./grafana/provisioning:/etc/grafana/provisioning:ro",
                    f"./grafana/dashboards:{GRAFANA_DASHBOARDS_DIR}:ro",
                    "grafana-data:/var/lib/grafana",
                ],
            },
            "redis-exporter": {
                "image": IMAGES["redis-exporter"],
                "network_mode": "host",
                "restart": "unless-stopped",
                "environment": {
                    "REDIS_ADDR": "${REDIS_URL:-redis://localhost:6379}",
                    "REDIS_PASSWORD": "${REDIS_PASS:-}",
                    "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": ":9121",
                },
            },
            "node-exporter": {
                "image": IMAGES["node-exporter"],
                "network_mode": "host",
                "pid": "host",
                "restart": "unless-stopped",
                "command": ["--path.rootfs=/host", "--web.listen-address=:9100"],
                "volumes": ["/:/host:ro,rslave"],
            },
            "dcgm-exporter": {
                "image": IMAGES["dcgm-exporter"],
                "network_mode": "host",
                "restart": "unless-stopped",
                "profiles": ["gpu"],
                "cap_add": ["SYS_ADMIN"],
                "deploy": {
                    "resources": {
                        "reservations": {"devices": [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}
                    }
                },
            },
        },
        "volumes": {"prometheus-data": {}, "grafana-data": {}},
    }
