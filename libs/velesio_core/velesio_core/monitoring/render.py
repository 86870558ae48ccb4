"""``velesio-monitoring [DIR]``: write the whole monitoring tree (default ``monitoring/``).

The tree is a pure function of the code and the command line, so a checkout's ``monitoring/``
is checked against it by the tests; to change a dashboard or a rule, change the code and render.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import alerts, compose, grafana, prometheus
from .config import MonitoringConfig, Targets
from .dashboards import DASHBOARDS

DEFAULT_DIR = Path("monitoring")
_HEADER = "# Rendered by velesio-monitoring (velesio_core.monitoring): change the code and render again.\n"
#: Directories whose every file is rendered: anything else found there is a leftover, and goes.
_OWNED_DIRS = ("grafana/dashboards", "grafana/provisioning", "prometheus/rules", "prometheus/targets")

README = """\
# velesio monitoring

Rendered by `velesio-monitoring` from `velesio_core.monitoring`; change the code and render again
(`make monitoring`), or render for your hosts:

    velesio-monitoring monitoring --api api.internal:8000 --worker gpu1:8001 --worker gpu2:8001

- `prometheus/prometheus.yml`: scrape jobs for the API, the workers, redis_exporter, node_exporter
  and NVIDIA's dcgm-exporter; targets in `prometheus/targets/` (Prometheus rereads them on change).
- `prometheus/rules/velesio.rules.yml`: alert rules.
- `grafana/`: datasource and dashboard provisioning, and the dashboards.
- `compose.yaml`: Prometheus on :9090, Grafana on :3000 and the exporters, on the host network
  (`GRAFANA_ADMIN_PASSWORD=... docker compose up -d`; add `--profile gpu` on GPU hosts).

The API's `/metrics` needs an API token: write one to `prometheus/secrets/api_token`
(the directory is git-ignored).
"""


def _yaml(value: Any) -> bytes:
    return (_HEADER + yaml.safe_dump(value, sort_keys=False, width=120, allow_unicode=True)).encode()


def _json(value: Any) -> bytes:
    return (JSONEncoder(sort_keys=True, indent=2).encode(value) + "\n").encode()


def render_tree(config: MonitoringConfig) -> dict[str, bytes]:
    """Every file of the tree, by path relative to its root."""
    files = {
        "README.md": README.encode(),
        "compose.yaml": _yaml(compose.compose_file()),
        "prometheus/prometheus.yml": _yaml(prometheus.prometheus_config(config)),
        f"prometheus/{prometheus.RULES_FILE}": _yaml(alerts.rules_file()),
        "grafana/provisioning/datasources/velesio.yml": _yaml(grafana.datasources(config)),
        "grafana/provisioning/dashboards/velesio.yml": _yaml(grafana.dashboard_providers()),
    }
    for path, targets in prometheus.target_files(config.targets).items():
        files[f"prometheus/{path}"] = _yaml(targets)
    for uid, build in DASHBOARDS.items():
        files[f"grafana/dashboards/{uid}.json"] = _json(build())
    return files


def write_tree(directory: Path, config: MonitoringConfig) -> list[Path]:
    files = render_tree(config)
    for owned in _OWNED_DIRS:
        for existing in (directory / owned).rglob("*"):
            if existing.is_file() and existing.relative_to(directory).as_posix() not in files:
                existing.unlink()
    written = []
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    defaults = Targets()
    parser = argparse.ArgumentParser(prog="velesio-monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    for name, field in (("api", "api"), ("worker", "workers"), ("redis-exporter", "redis_exporter"),
                        ("node-exporter", "node_exporter"), ("gpu-exporter", "gpu_exporter")):  # fmt: skip
        parser.add_argument(
            f"--{name}", dest=field, action="append", metavar="HOST:PORT",
            help=f"a target to scrape (repeatable; default {', '.join(getattr(defaults, field))})",
        )  # fmt: skip
    parser.add_argument("--scrape-interval", default=MonitoringConfig.scrape_interval)
    parser.add_argument("--prometheus-url", default=MonitoringConfig.prometheus_url, help="as Grafana reaches it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> None:
    args = _arguments(argv)
    given = {field: tuple(args.__dict__[field]) for field in Targets.__dataclass_fields__ if args.__dict__[field]}
    config = MonitoringConfig(
        targets=Targets(**given),
        scrape_interval=args.scrape_interval,
        evaluation_interval=args.scrape_interval,
        prometheus_url=args.prometheus_url,
    )
    written = write_tree(args.directory, config)
    out(f"velesio-monitoring: wrote {len(written)} files to {args.directory}/ (see its README.md)")


if __name__ == "__main__":
    main()
