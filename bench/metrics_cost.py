"""What velesio's own metrics cost: figure (a), a whole /completion, through a stack that measures
and one that does not (METRICS=false), each with its own worker and llama-server of the same
build and settings, alternated request by request."""

from __future__ import annotations

from bench.llm import BODY, Client, paired
from bench.report import Section, ms, percentile


def metrics_cost(section: Section, on_url: str, on_auth: dict[str, str], off_url: str, off_auth: dict[str, str],
                 samples: int) -> None:  # fmt: skip
    on, off = Client(on_url, on_auth), Client(off_url, off_auth)
    without, with_metrics = paired(lambda: off.whole("/completion", BODY), lambda: on.whole("/completion", BODY),
                                   samples)  # fmt: skip
    added = percentile(with_metrics, 0.5) - percentile(without, 0.5)
    section.add(
        "whole /completion, metrics off p50 / on p50",
        f"{ms(percentile(without, 0.5))} / {ms(percentile(with_metrics, 0.5))}",
    )
    section.add("**added by metrics** p50", ms(added), "≤ 0.1 ms", added <= 0.0001)
    added99 = percentile(with_metrics, 0.99) - percentile(without, 0.99)
    section.add("added by metrics p99", ms(added99))
