"""Prometheus's own tool on the committed tree: the configuration loads, the rules parse and do
what alerts_test.yml says, and every dashboard query is valid PromQL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.monitoring.support import COMMITTED_TREE, alert_rules, panel_queries, required

HERE = Path(__file__).parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([required("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_prometheus_accepts_the_configuration(tmp_path: Path):
    tree = tmp_path / "monitoring"
    shutil.copytree(COMMITTED_TREE, tree, ignore=shutil.ignore_patterns("secrets"))
    # The operator's token file (git-ignored): promtool insists that it exists.
    (tree / "prometheus/secrets").mkdir()
    (tree / "prometheus/secrets/api_token").write_text("a-token\n")
    checked = run("check", "config", str(tree / "prometheus/prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 12 rules found" in checked.stdout


def test_the_alert_rules_pass_their_unit_tests():
    tested = run("test", "rules", str(HERE / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    cases = yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for rule in alert_rules(COMMITTED_TREE):
        outcomes = [bool(check["exp_alerts"]) for check in checks if check["alertname"] == rule["alert"]]
        assert True in outcomes, f"no test makes {rule['alert']} fire"
        assert False in outcomes, f"no test shows {rule['alert']} quiet"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    queries = panel_queries(COMMITTED_TREE)
    assert len(queries) > 40
    # promtool parses the expressions of recording rules: one rule per panel query.
    rules = [{"record": f"panel:query{index}", "expr": query.concrete("1m")} for index, query in enumerate(queries)]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checked = run("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
