"""A Bazel py_test's main: run one pytest file from the runfiles tree, as `make test` would.

pytest reads the workspace's pyproject.toml (markers, options), runs from the test's private
temporary directory (so hypothesis' database stays there), and writes the JUnit XML that Bazel
shows per test case. pytest's own temporary files go to a short directory under /tmp instead:
tests put llama-server's Unix socket there, and Bazel's paths exceed a socket path's 108 bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def main() -> int:
    workspace = Path(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
    basetemp = tempfile.mkdtemp(prefix="velesio-bazel-", dir="/tmp")
    args = [
        "-c", str(workspace / "pyproject.toml"),
        "--rootdir", str(workspace),
        "-p", "no:cacheprovider",
        "--basetemp", basetemp,
    ]  # fmt: skip
    if "XML_OUTPUT_FILE" in os.environ:
        args += ["--junitxml", os.environ["XML_OUTPUT_FILE"]]
    tests = [str(workspace / path) for path in sys.argv[1:]]
    os.chdir(os.environ["TEST_TMPDIR"])
    try:
        return pytest.main(args + tests)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
