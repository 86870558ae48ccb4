"""The build checks: the hash lock, Bazel, the Nix flake and the OCI images, run for real as far as
this machine allows. What it cannot check is said at the end of the run (`NOT VERIFIED HERE`).

The tools come from scripts/build-tools.sh, run once per session and group. These tests have no Bazel
target, so `bazel test //...` (which one of them runs) does not run them again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

#: What these checks cannot establish on this machine, printed after every run that includes them.
NOT_VERIFIED: dict[str, str] = {}
TIMINGS: list[str] = []
#: Figures worth seeing in CI's log (image digests), printed after the run.
RESULTS: list[str] = []


def not_verified(what: str, why: str) -> None:
    NOT_VERIFIED[what] = why


def report(line: str) -> None:
    RESULTS.append(line)


def run(command: list[str], *, timeout: float, what: str | None = None, check: bool = True, **kwargs):
    """Run a command from the repository root, recording how long it took."""
    kwargs.setdefault("cwd", ROOT)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    TIMINGS.append(f"{time.monotonic() - started:7.1f} s  {what or shlex.join(command)[:100]}")
    if check and result.returncode != 0:
        output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        pytest.fail(f"{shlex.join(command)} exited {result.returncode}\n{output}")
    return result


#: The commands each group of scripts/build-tools.sh provides.
TOOLS = {
    "bazel": ["bazel", "unshare", "ip"],
    "nix": ["nix", "nix-instantiate"],
    "images": ["buildah", "mmdebstrap", "skopeo", "oci-image-tool", "redis-server"],
}


def install_tools(group: str) -> None:
    run([str(ROOT / "scripts" / "build-tools.sh"), group], timeout=900, what=f"scripts/build-tools.sh {group}")
    missing = [command for command in TOOLS[group] if shutil.which(command) is None]
    if missing and os.environ.get("VELESIO_NO_APT"):
        # Outside Debian (`nix develop`) nothing installs them; these checks are CI's, on Debian 12.
        pytest.skip(f"{', '.join(missing)} not on PATH and VELESIO_NO_APT is set")
    assert not missing, f"scripts/build-tools.sh {group} left {missing} missing"


@pytest.fixture(scope="session")
def bazel_tools() -> None:
    install_tools("bazel")


@pytest.fixture(scope="session")
def nix_tools() -> None:
    install_tools("nix")


@pytest.fixture(scope="session")
def image_tools() -> None:
    install_tools("images")


def pytest_terminal_summary(terminalreporter) -> None:
    if RESULTS:
        terminalreporter.section("build checks: results")
        for line in RESULTS:
            terminalreporter.write_line(line)
    if TIMINGS:
        terminalreporter.section("build checks: timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
    if NOT_VERIFIED:
        terminalreporter.section("build checks: NOT VERIFIED HERE")
        for what, why in NOT_VERIFIED.items():
            terminalreporter.write_line(f"- {what}: {why}")


def venv_env() -> dict[str, str]:
    """The environment with the project's venv first on PATH (uv, pip)."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    return env
