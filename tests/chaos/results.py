"""The chaos suite's figures, written to bench/RESULTS.md as its own section (bench/report.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Section, replace_sections

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "RESULTS.md"
TITLE = "Chaos: faults under load (make chaos)"


@dataclass
class ScenarioFigures:
    name: str
    description: str
    counts: dict[str, int]
    leaked_keys: int
    leaked_gauges: int
    recovery_s: float | None
    recovery_target_s: float | None
    extra: dict[str, float] = field(default_factory=dict)

    def misses(self) -> list[str]:
        """The figures that miss their targets (0 lost, hung, duplicated, leaked; the recovery bound)."""
        missed = [name for name in ("lost", "hung", "duplicated") if self.counts.get(name)]
        if self.leaked_keys:
            missed.append("leaked_keys")
        if self.leaked_gauges:
            missed.append("leaked_gauges")
        if self.recovery_target_s is not None and (self.recovery_s or 0) > self.recovery_target_s:
            missed.append("recovery")
        missed += [name for name, value in self.extra.items() if value]
        return missed


@dataclass
class ChaosReport:
    setup: list[str] = field(default_factory=list)
    scenarios: list[ScenarioFigures] = field(default_factory=list)
    fuzz: tuple[int, int, str] | None = None  # (bodies sent, 5xx answers, an example)

    def section(self) -> Section:
        section = Section(TITLE)
        for figures in self.scenarios:
            c = figures.counts
            recovery = "" if figures.recovery_s is None else f", recovery {figures.recovery_s:.2f} s"
            extra = "".join(f", {name} {value:g}" for name, value in figures.extra.items())
            measured = (
                f"{c['answered']} answered, {c['clean_error']} clean errors, {c['lost']} lost, {c['hung']} hung, "
                f"{c['duplicated']} duplicated; leaked {figures.leaked_keys} keys, {figures.leaked_gauges} gauges"
                f"{recovery}{extra}"
            )
            target = "0 lost, hung, duplicated, leaked" + (
                f"; recovery ≤ {figures.recovery_target_s:g} s" if figures.recovery_target_s is not None else ""
            )
            section.add(f"{figures.name}: {figures.description}", measured, target, not figures.misses())
        if self.fuzz is not None:
            sent, failed, example = self.fuzz
            section.add("malformed bodies to every POST route (hypothesis)", f"{sent} sent, {failed} answered 5xx",
                        "0 5xx", failed == 0)  # fmt: skip
            if example:
                section.notes.append(f"A 5xx answer: `{example}`\n")
        if self.setup:
            section.notes.append("Setup: " + "; ".join(self.setup) + ".\n")
        section.notes.append(
            "Outcomes: *answered* complete; *clean error* a status with the dialect's JSON error, a stream "
            "ending in its error event, or a connection refused before sending; *lost* cut with no error; "
            "*hung* no end within 40 s; *duplicated* a stream with more tokens than were generated. "
            "Recovery: from the fault (or the restarted part answering) to the end of the last failed request."
        )
        return section

    def write(self) -> None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        existing = RESULTS.read_text() if RESULTS.exists() else "# velesio benchmarks\n"
        RESULTS.write_text(replace_sections(existing, [self.section()], when=when))
