"""Every registered fault (scenarios.py), under load: what became of each request, what was left
behind, and how long recovery took. The figures are written to bench/RESULTS.md whether or not
they meet their targets; then the targets are checked."""

from __future__ import annotations

import time

import pytest

from .checks import settle_and_find_leaks
from .load import Load, Tally
from .results import ScenarioFigures
from .scenarios import SCENARIOS


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault_under_load(name, cluster, chaos_report):
    scenario = SCENARIOS[name]
    if scenario.needs_isolation and not cluster.network.isolated:
        pytest.skip(f"needs a worker on a host of its own: {cluster.network.why_not_isolated}")
    cluster.wait_healthy(timeout=60)
    load = Load(cluster).start()
    time.sleep(scenario.before_s)
    answered_before = load.answered_since(0)
    recovery_from = scenario.inject(cluster, load)
    time.sleep(scenario.after_s)
    load_ended = time.time()
    outcomes = load.stop()
    tally = Tally.of(outcomes, recovery_from=recovery_from)
    leaks = settle_and_find_leaks(cluster)
    figures = ScenarioFigures(
        name,
        scenario.description,
        dict(tally.counts),
        len(leaks.keys),
        sum(1 for value in leaks.gauges.values() if value),
        tally.recovery_s,
        scenario.recovery_target_s,
        dict(scenario.extra) | ({} if scenario.errors_allowed else {"clean errors": tally.counts["clean_error"]}),
    )
    chaos_report.scenarios.append(figures)
    print(f"{name}: {dict(tally.counts)}, recovery {tally.recovery_s}, leaks {leaks}, examples {tally.examples}")
    for outcome in outcomes:
        if outcome.kind != "answered" and recovery_from is not None:
            print(f"  {outcome.kind} {outcome.started - recovery_from:+.2f}..{outcome.ended - recovery_from:+.2f} s "
                  f"{outcome.request}: {outcome.detail}")  # fmt: skip

    # The load itself worked: without answers before the fault, nothing here would mean anything.
    assert answered_before > 0, tally.examples
    assert load.answered_since(load_ended - scenario.after_s / 2) > 0, f"nothing answered after {name}"
    misses = figures.misses()
    unexpected = [miss for miss in misses if miss not in scenario.known_gaps]
    assert not unexpected, f"{name} missed {unexpected}: {tally.examples}, leaks {leaks}"
    known = [miss for miss in misses if miss in scenario.known_gaps]
    if known:
        pytest.xfail("; ".join(f"{miss}: {scenario.known_gaps[miss]}" for miss in known))
