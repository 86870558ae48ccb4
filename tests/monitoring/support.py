"""Reading a rendered monitoring tree: the dashboards' queries and variables, the alert rules."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMMITTED_TREE = REPO / "monitoring"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    def concrete(self, rate_interval: str) -> str:
        """The query as Prometheus would get it from Grafana: its variables filled in (every value
        of a template variable, and ``rate_interval`` for ``$__rate_interval``)."""
        expr = self.expr.replace("$__rate_interval", rate_interval)
        for variable in ("$model", "$instance", "$host"):
            expr = expr.replace(variable, ".*")
        assert "$" not in expr, f"{self}: a variable the tests do not know"
        return expr


def dashboards(tree: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((tree / "grafana/dashboards").glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())  # the panels of collapsed rows


def panel_queries(tree: Path) -> list[PanelQuery]:
    return [
        PanelQuery(uid, panel["title"], target["expr"])
        for uid, dashboard in dashboards(tree).items()
        for panel in panels(dashboard)
        for target in panel.get("targets", ())
    ]


def alert_rules(tree: Path) -> list[dict]:
    rules = yaml.safe_load((tree / "prometheus/rules/velesio.rules.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def required(binary: str) -> str:
    """The path of a tool the monitoring tests run (Prometheus's, the exporters)."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is missing: `make test` installs it from Debian's packages")
    return path
