"""Grafana's provisioning: the Prometheus datasource (with the uid every panel names) and a file
provider that loads the dashboards into a "velesio" folder."""

from __future__ import annotations

from typing import Any

from .config import DATASOURCE_UID, GRAFANA_DASHBOARDS_DIR, MonitoringConfig


def datasources(config: MonitoringConfig) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus (velesio)",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": config.prometheus_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": config.scrape_interval},
            }
        ],
    }


def dashboard_providers() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "velesio",
                "folder": "velesio",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARDS_DIR, "foldersFromFilesStructure": False},
            }
        ],
    }
