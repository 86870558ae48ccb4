"""The README's few benchmark rows, copied verbatim from bench/RESULTS.md so that they cannot drift
from it: ``bench/run.py`` rewrites the README's quote after each run, and a test
(tests/unit/test_bench_quote.py) fails when the two differ.

``python bench/quote.py`` rewrites it by hand (after editing RESULTS.md, say).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "RESULTS.md"

BEGIN = "<!-- bench-quote: begin (bench/quote.py copies these rows from bench/RESULTS.md) -->"
END = "<!-- bench-quote: end -->"

#: (a section's title starts with, a row's measure starts with): the rows quoted, in this order.
QUOTED = (
    ("LLM:", "a. **added latency** p50"),
    ("LLM:", "a. **added latency** p99"),
    ("LLM:", "a. **added latency after"),
    ("LLM:", "b. **added time to first token**"),
    ("LLM:", "c. **throughput ratio**"),
    ("LLM:", "c. the same with answers of 128 tokens"),
    ("CPU:", "a. **gateway CPU per job**"),
    ("CPU:", "floor a. **least gateway CPU per job**"),
    ("CPU:", "b. **gateway CPU per relayed token**"),
    ("CPU:", "floor b. **least gateway CPU per relayed token**"),
    ("Peers:", "8 client(s), velesio:"),
    ("Peers:", "8 client(s), LiteLLM"),
    ("Peers:", "8 client(s), Portkey"),
)


def sections(results: str) -> dict[str, list[str]]:
    """Each section's title and its lines."""
    found: dict[str, list[str]] = {}
    title = ""
    for line in results.splitlines():
        if line.startswith("## "):
            title = line[3:]
            found[title] = []
        elif title:
            found[title].append(line)
    return found


def quote(results: str) -> str:
    """The README's block: the quoted rows, each under its section's title, and where they ran."""
    by_title = sections(results)
    machine = re.search(r"^\*\*Machine:\*\* (.+)$", results, re.MULTILINE)
    lines = [BEGIN, "", "| section | measure | result | target | |", "|---|---|---|---|---|"]
    for title_start, measure in QUOTED:
        title = next((t for t in by_title if t.startswith(title_start)), None)
        row = next((line for line in by_title.get(title or "", []) if line.startswith(f"| {measure}")), None)
        if title is None or row is None:
            raise LookupError(f"bench/RESULTS.md has no row {measure!r} in a section {title_start!r}")
        lines.append(f"| {title.split(':')[0]} {row}")
    lines += ["", f"Measured on {machine.group(1) if machine else 'the machine named in bench/RESULTS.md'};",
              "each section's date and commit are in bench/RESULTS.md.", "", END]  # fmt: skip
    return "\n".join(lines)


def with_quote(readme: str, results: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + quote(results) + readme[end:]


def main() -> None:
    README.write_text(with_quote(README.read_text(), RESULTS.read_text()))


if __name__ == "__main__":
    sys.exit(main())
