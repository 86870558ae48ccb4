"""What velesio's own metrics cost: figure (a), a whole /completion, through a stack that measures
and one that does not (METRICS=false). Each stack has its own worker and llama-server of the same
build and settings, so the two llama-servers are also asked directly, alternated with the rest:
the cost is the difference in the gateway's *added* time, not in the whole request's."""

from __future__ import annotations

from bench.llm import BODY, Client
from bench.report import Section, ms, percentile


def metrics_cost(section: Section, measured, unmeasured, samples: int) -> None:
    """``measured`` and ``unmeasured`` are running stacks (tests.support.processes.Stack)."""
    sides = {
        "on": Client(measured.base_url, measured.auth),
        "off": Client(unmeasured.base_url, unmeasured.auth),
        "on direct": Client(measured.llama_url),
        "off direct": Client(unmeasured.llama_url),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(30 + samples):
        for name, client in sides.items():
            elapsed = client.whole("/completion", BODY)
            if round_ >= 30:  # the first rounds warm everything up
                times[name].append(elapsed)

    def added(side: str, fraction: float) -> float:
        return percentile(times[side], fraction) - percentile(times[f"{side} direct"], fraction)

    section.add("whole /completion, added over its own llama-server: metrics off p50 / on p50",
                f"{ms(added('off', 0.5))} / {ms(added('on', 0.5))}")  # fmt: skip
    cost = added("on", 0.5) - added("off", 0.5)
    section.add("**added by metrics** p50", ms(cost), "≤ 0.1 ms", cost <= 0.0001)
    section.add("added by metrics p99", ms(added("on", 0.99) - added("off", 0.99)))
