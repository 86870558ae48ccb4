"""Benchmark results: percentiles, the machine they ran on, and the markdown written to RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, {system}, Python {platform.python_version()}"


def revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


@dataclass
class Row:
    name: str
    measured: str
    target: str
    met: bool | None  # None: no target


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, measured: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(name, measured, target, met))


def markdown(sections: list[Section], *, when: str, setup: list[str]) -> str:
    lines = ["# velesio benchmarks", "", f"Run {when} at commit `{revision()}` with `make bench`.", "",
             f"**Machine:** {machine()}", "", "**Setup:**", *(f"- {item}" for item in setup), ""]  # fmt: skip
    for section in sections:
        lines += [f"## {section.title}", "", "| measure | result | target | |", "|---|---|---|---|"]
        for row in section.rows:
            verdict = "" if row.met is None else ("met" if row.met else "**not met**")
            lines.append(f"| {row.name} | {row.measured} | {row.target} | {verdict} |")
        lines.append("")
        lines += [f"{note}" for note in section.notes]
        if section.notes:
            lines.append("")
    return "\n".join(lines)


def replace_sections(existing: str, sections: list[Section], *, when: str) -> str:
    """``existing`` (a RESULTS.md) with each of ``sections`` put in place of the one of the same
    title, or appended; each replaced section says when and at which commit it was measured."""
    for section in sections:
        section.notes.append(
            f"(This section was measured on its own, {when} at commit `{revision()}`, on {machine()}.)"
        )
        rendered = markdown([section], when=when, setup=[]).split(f"## {section.title}", 1)[1]
        block = f"## {section.title}{rendered}".rstrip("\n") + "\n"
        start = existing.find(f"## {section.title}")
        if start == -1:
            existing = existing.rstrip("\n") + "\n\n" + block
            continue
        end = existing.find("\n## ", start + 1)
        existing = existing[:start] + block + (existing[end:] if end != -1 else "")
    return existing
