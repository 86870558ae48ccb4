"""Where a job's CPU goes: py-spy samples of the API and the worker under the cpu section's load
(8 wrk clients, whole 8-token answers, then 128-token streams), summed by function.

Not part of ``make bench``: run it by hand on the default stack, with a py-spy of your own (it is
no dependency of the project), e.g. installed into ~/.cache/velesio-bench/tools::

    python3 -m venv ~/.cache/velesio-bench/tools && ~/.cache/velesio-bench/tools/bin/pip install py-spy
    .venv/bin/python bench/cpu_profile.py --seconds 10

It prints, per process and load, the functions with the largest share of samples: their own
(self) and with what they call (total). docs/decisions.md ("Where a job's CPU goes") reads them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu import CLIENTS, STREAM  # noqa: E402
from bench.llm import BODY  # noqa: E402
from bench.procs import children  # noqa: E402
from bench.run import DEFAULTS, KEY_SECRET  # noqa: E402
from bench.wrk import wrk  # noqa: E402
from tests.support.processes import RedisServer, start_stack  # noqa: E402
from velesio_core.tiny_model import write_tiny_model  # noqa: E402

PY_SPY = Path.home() / ".cache" / "velesio-bench" / "tools" / "bin" / "py-spy"


def record(py_spy: str, pid: int, seconds: float, output: Path) -> subprocess.Popen:
    command = [py_spy, "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", "200",
               "--nonblocking", "--format", "raw", "--output", str(output)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def shares(collapsed: Path, top: int) -> list[str]:
    """The ``top`` functions by own samples and by samples that include them, of a collapsed file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
                  for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]  # fmt: skip
        if not frames:
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"  {total} samples"]
    lines += [f"  self  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += [f"  total {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top * 2)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--py-spy", default=str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy"))
    args = parser.parse_args()
    if not args.py_spy:
        sys.exit(__doc__)
    work = Path(tempfile.mkdtemp(prefix="velesio-profile-"))
    redis = RedisServer.start(work / "logs")
    stack = None
    try:
        model = write_tiny_model(work / "tiny.gguf")
        stack = start_stack(redis.url(0), model, work / "logs", name="profile", KEY_SECRET=KEY_SECRET, **DEFAULTS)
        api = next(p for p in stack.processes if p.name.endswith("-api")).popen.pid
        worker = next(p for p in stack.processes if p.name.endswith("-worker")).popen.pid
        targets = {"API (gunicorn worker)": children(api)[0], "worker": worker}
        for load, body in (("whole 8-token answers", BODY), ("128-token streams", STREAM)):
            wrk(stack.base_url + "/completion", body, seconds=1, connections=CLIENTS, headers=stack.auth)
            outputs = {name: work / f"{name.split()[0]}-{load.split()[0]}.txt" for name in targets}
            spies = [record(args.py_spy, pid, args.seconds, outputs[name]) for name, pid in targets.items()]
            load_thread = threading.Thread(target=wrk, args=(stack.base_url + "/completion", body),
                                           kwargs={"seconds": args.seconds + 2, "connections": CLIENTS,
                                                   "headers": stack.auth})  # fmt: skip
            load_thread.start()
            for spy in spies:
                _, errors = spy.communicate()
                if spy.returncode != 0:
                    sys.exit(f"py-spy failed: {errors}")
            load_thread.join()
            for name in targets:
                print(f"{name}, {CLIENTS} clients, {load}:")
                print("\n".join(shares(outputs[name], args.top)), flush=True)
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
