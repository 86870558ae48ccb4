"""A Bazel py_test's main: run one pytest file from the runfiles tree, as `make test` would.

pytest reads the workspace's pyproject.toml (markers, options), runs from the test's private
temporary directory (so hypothesis' database stays there), and writes the JUnit XML that Bazel
shows per test case. pytest's own temporary files go to a short directory under /tmp instead:
tests put llama-server's Unix socket there, and Bazel's paths exceed a socket path's 108 bytes.
"""

from __future__ import annotations

import compileall
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def compile_bytecode(workspace: Path) -> None:
    """Bytecode for the runfiles' sources, as any installed or checked-out package has it.

    Bazel's runfiles are read-only, so Python would compile every first-party module again in
    every process, each time. The cost lands on first use too: a module a server imports at its
    first request is compiled while other requests wait on the import lock, which is enough to
    make the concurrency tests see one slot fewer busy (measured: the same with pytest after
    deleting __pycache__ and setting PYTHONDONTWRITEBYTECODE). PYTHONPYCACHEPREFIX puts the
    bytecode in the test's temporary directory, for this process and the servers it starts.
    """
    prefix = Path(os.environ["TEST_TMPDIR"], "pycache")
    sys.pycache_prefix = str(prefix)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    compileall.compile_dir(workspace, quiet=1, workers=0)


def main() -> int:
    workspace = Path(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
    compile_bytecode(workspace)
    basetemp = tempfile.mkdtemp(prefix="velesio-bazel-", dir="/tmp")
    args = [
        "-c", str(workspace / "pyproject.toml"),
        "--rootdir", str(workspace),
        "-p", "no:cacheprovider",
        "--basetemp", basetemp,
    ]  # fmt: skip
    if "XML_OUTPUT_FILE" in os.environ:
        args += ["--junitxml", os.environ["XML_OUTPUT_FILE"]]
    # `bazel test --test_filter=EXPR` selects tests as pytest's -k does.
    if os.environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", os.environ["TESTBRIDGE_TEST_ONLY"]]
    # The BUILD file's args name the test file; `--test_arg`s after it are pytest options.
    tests = [str(workspace / arg) if arg.endswith(".py") else arg for arg in sys.argv[1:]]
    os.chdir(os.environ["TEST_TMPDIR"])
    try:
        return pytest.main(args + tests)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
