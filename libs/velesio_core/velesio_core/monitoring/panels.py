"""The few panel shapes velesio's dashboards use, over grafana-foundation-sdk's builders.

Every panel queries the one provisioned Prometheus datasource. Panel ids and positions are left
to :func:`dashboard`: rows stack in order, panels flow left to right within them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models

from .config import DATASOURCE_UID

DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
#: Grafana widens this to at least four scrape intervals, so a rate always spans enough samples.
RATE = "$__rate_interval"
#: Grafana's dashboard grid is 24 columns wide.
GRID_WIDTH = 24

#: A query: (PromQL, legend).
Query = tuple[str, str]
#: The panel builders velesio uses; each can take queries, an id and a place on the grid.
Panel = timeseries.Panel | stat.Panel
_P = TypeVar("_P", timeseries.Panel, stat.Panel)


def _targets(panel: _P, queries: Sequence[Query]) -> _P:
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(
            prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(chr(ord("A") + index))
        )
    return panel


def graph(
    title: str, unit: str, *queries: Query, description: str = "", width: int = 8, stacked: bool = False
) -> Panel:
    legend = common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST).show_legend(True)
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .fill_opacity(10)
        .legend(legend.placement(common.LegendPlacement.BOTTOM))
        .span(width)
        .height(8)
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return _targets(panel, queries)


def single(title: str, unit: str, *queries: Query, description: str = "", width: int = 4) -> Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(4)
    )
    return _targets(panel, queries)


def percentiles(buckets: str, *, by: str = "", quantiles: Sequence[float] = (0.5, 0.95, 0.99)) -> list[Query]:
    """p50/p95/p99 of a histogram, from ``buckets`` (a selector of its ``_bucket`` series)."""
    group = f"le, {by}" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({group}) (rate({buckets}[{RATE}])))", f"{prefix}p{round(q * 100)}")
        for q in quantiles
    ]


def label_variable(name: str, label: str, metric: str) -> dashboard_builders.QueryVariable:
    """A multi-value variable over the values of ``label`` on ``metric``, "All" by default."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label.capitalize())
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {label})")
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[tuple[str, Sequence[Panel]]],
    *,
    variables: Sequence[dashboard_builders.QueryVariable] = (),
) -> dashboard_models.Dashboard:
    """A dashboard of titled rows; ids are numbered in order, so they are unique and stable."""
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["velesio"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
    )
    for variable in variables:
        board = board.with_variable(variable)
    next_id, y = 1, 0
    for row_title, panels in rows:
        row = dashboard_builders.Row(row_title).id(next_id)
        board = board.with_row(row.grid_pos(dashboard_models.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)))
        next_id, y = next_id + 1, y + 1
        x = line_height = 0
        for panel in panels:
            # The SDK's own placement lets a wide panel run off the grid; flow them here instead.
            size = panel._internal.grid_pos
            assert size is not None, "graph() and single() size every panel"
            if x + size.w > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            board = board.with_panel(panel.id(next_id).grid_pos(dashboard_models.GridPos(h=size.h, w=size.w, x=x, y=y)))
            next_id, x, line_height = next_id + 1, x + size.w, max(line_height, size.h)
        y += line_height
    return board.build()
