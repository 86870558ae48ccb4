"""The committed monitoring tree is what the code renders, and it holds together: dashboards,
provisioning and the compose file refer to things that exist.

Grafana itself cannot run here (no Grafana package in Debian 12, no network): these checks and
the live Prometheus test stand in for loading the dashboards into it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.monitoring.support import COMMITTED_TREE, alert_rules, dashboards, panel_queries, panels
from velesio_core.metrics import api as api_metrics
from velesio_core.metrics import queue as queue_metrics
from velesio_core.metrics import worker as worker_metrics
from velesio_core.monitoring import render
from velesio_core.monitoring.config import GRAFANA_DASHBOARDS_DIR, MonitoringConfig, Targets


def test_the_committed_tree_is_what_the_code_renders():
    rendered = render.render_tree(MonitoringConfig())
    committed = {
        path.relative_to(COMMITTED_TREE).as_posix(): path.read_bytes()
        for path in COMMITTED_TREE.rglob("*")
        if path.is_file() and "secrets" not in path.parts
    }
    stale = sorted(path for path in rendered.keys() | committed.keys() if rendered.get(path) != committed.get(path))
    assert not stale, f"monitoring/ drifted from velesio_core.monitoring; run `make monitoring`: {stale}"


def test_the_command_renders_for_given_hosts_and_removes_leftovers(tmp_path: Path):
    leftover = tmp_path / "grafana/dashboards/retired.json"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("{}")
    lines: list[str] = []
    render.main([str(tmp_path), "--worker", "gpu1:8001", "--worker", "gpu2:8001", "--scrape-interval", "5s"],
                out=lines.append)  # fmt: skip
    workers = yaml.safe_load((tmp_path / "prometheus/targets/velesio-worker.yml").read_text())
    assert workers == [{"targets": ["gpu1:8001", "gpu2:8001"]}]
    api = yaml.safe_load((tmp_path / "prometheus/targets/velesio-api.yml").read_text())
    assert api == [{"targets": list(Targets().api)}]
    assert yaml.safe_load((tmp_path / "prometheus/prometheus.yml").read_text())["global"]["scrape_interval"] == "5s"
    assert not leftover.exists()
    assert lines and "15 files" in lines[0]


@pytest.mark.parametrize("uid", sorted(dashboards(COMMITTED_TREE)))
def test_dashboard_ids_grid_and_uid(uid: str):
    dashboard = dashboards(COMMITTED_TREE)[uid]
    every = list(panels(dashboard))
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
    assert dashboard["uid"] == uid
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{uid}/{panel['title']} runs off the 24-column grid"
    cells = set()
    for panel in every:
        grid = panel["gridPos"]
        columns, lines = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        mine = {(x, y) for x in columns for y in lines}
        assert not cells & mine, f"{uid}/{panel['title']} overlaps another panel"
        cells |= mine


def test_every_datasource_a_dashboard_names_is_provisioned():
    provisioned = yaml.safe_load((COMMITTED_TREE / "grafana/provisioning/datasources/velesio.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    for uid, dashboard in dashboards(COMMITTED_TREE).items():
        named = [panel["datasource"]["uid"] for panel in panels(dashboard) if panel["type"] != "row"]
        named += [variable["datasource"]["uid"] for variable in dashboard["templating"].get("list", [])]
        assert named and set(named) <= uids, f"{uid} names a datasource that is not provisioned"


def test_every_variable_a_query_uses_is_defined():
    for uid, dashboard in dashboards(COMMITTED_TREE).items():
        defined = {variable["name"] for variable in dashboard["templating"].get("list", [])}
        for query in panel_queries(COMMITTED_TREE):
            if query.dashboard == uid:
                used = set(re.findall(r"\$(\w+)", query.expr)) - {"__rate_interval"}
                assert used <= defined, f"{uid}/{query.panel} uses undefined variables {used - defined}"


def test_the_overview_shows_every_velesio_metric():
    # A metric nobody can see on a board is a metric nobody looks at.
    shown = " ".join(query.expr for query in panel_queries(COMMITTED_TREE))
    for module in (api_metrics, queue_metrics, worker_metrics):
        for metric in vars(module).values():
            name = getattr(metric, "_name", None)
            if isinstance(name, str) and name.startswith("velesio_"):
                assert name in shown, f"{name} is on no dashboard"


def test_the_provider_loads_the_directory_compose_mounts():
    providers = yaml.safe_load((COMMITTED_TREE / "grafana/provisioning/dashboards/velesio.yml").read_text())
    assert [provider["options"]["path"] for provider in providers["providers"]] == [GRAFANA_DASHBOARDS_DIR]
    compose = yaml.safe_load((COMMITTED_TREE / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{GRAFANA_DASHBOARDS_DIR}:ro" in mounts


def test_compose_pins_its_images_and_mounts_what_exists():
    compose = yaml.safe_load((COMMITTED_TREE / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        image = service["image"]
        assert re.search(r":[\w.-]*\d[\w.-]*$", image), f"{name}: {image} is not pinned to a version"
        for volume in service.get("volumes", ()):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMMITTED_TREE / source).is_dir(), f"{name} mounts {source}, which is not in the tree"
    prometheus = compose["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_every_alert_has_a_severity_and_words_for_a_human():
    for rule in alert_rules(COMMITTED_TREE):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
