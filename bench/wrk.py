"""wrk, the load generator of the throughput figures, run once with its count of requests and its
latency percentiles."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class WrkRun:
    requests: int
    seconds: float
    p50: float
    p99: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, body: dict, *, seconds: float, connections: int, headers: dict[str, str] | None = None) -> WrkRun:
    """POST ``body`` to ``url`` over ``connections`` keep-alive connections for ``seconds``; an
    answer other than 2xx or 3xx raises, with wrk's output."""
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write("\n".join(lines) + "\n")
        lua.flush()
        command = ["wrk", "--latency", "-t", str(min(2, connections)), "-c", str(connections),
                   "-d", f"{seconds:g}s", "-s", lua.name, url]  # fmt: skip
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if done is None:
        raise RuntimeError(f"wrk's output has no request count:\n{output}")

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"wrk's output has no {percent}% latency:\n{output}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    return WrkRun(int(done.group(1)), float(done.group(2)) * _UNITS[done.group(3)], latency("50"), latency("99"))
