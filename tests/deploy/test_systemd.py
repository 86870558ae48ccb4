"""deploy/systemd's units: `systemd-analyze verify` (Debian's systemd 252) finds nothing to say,
`systemd-analyze security` rates them well hardened, and what they set matches velesio itself
(settings that exist, stop timeouts that cover the services' own drains).

The units cannot be started here: this container's PID 1 is not systemd. verify loads each unit
as systemd would (syntax, unknown keys, the executable's presence) without a running manager.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.variables import known_variables
from tests.support.processes import ROOT
from velesio_api.main import gunicorn_options
from velesio_core.settings import Settings
from velesio_worker.main import ACK_GRACE_S

SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = {"velesio-api.service": "velesio-api.service", "velesio-worker@.service": "velesio-worker@0.service"}
#: What `systemd-analyze security` calls "OK" ends at 4.9; these units do much better.
MAX_EXPOSURE = 2.5


def installed(tmp_path, name: str) -> str:
    """The unit as installed, except that /opt/velesio/.venv is the virtual environment running
    this test, whose bin/ has the entry points, so that verify checks that ExecStart exists.
    Bazel's Python has no console scripts (only the venv's third-party packages): there, stand-ins
    take their place, and verify checks the rest of the unit."""
    bin_dir = Path(sys.prefix) / "bin"
    scripts = re.findall(r"^ExecStart=/opt/velesio/\.venv/bin/(\S+)$", (SYSTEMD / name).read_text(), re.M)
    if not all((bin_dir / script).is_file() for script in scripts):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for script in scripts:
            (bin_dir / script).write_text("#!/bin/sh\n")
            (bin_dir / script).chmod(0o755)
    text = (SYSTEMD / name).read_text().replace("/opt/velesio/.venv/bin", str(bin_dir))
    (tmp_path / name).write_text(text)
    return text


def systemd_analyze(*arguments: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *arguments], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_is_silent(tmp_path, name):
    installed(tmp_path, name)
    result = systemd_analyze("verify", f"./{UNITS[name]}", cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result.stderr


def test_verify_catches_a_mistake(tmp_path):
    """The check above can fail: a misspelt option is reported."""
    text = installed(tmp_path, "velesio-api.service")
    (tmp_path / "velesio-api.service").write_text(text.replace("ProtectSystem=", "ProtectSytem="))
    assert "Unknown key" in systemd_analyze("verify", "./velesio-api.service", cwd=tmp_path).stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_hardened(tmp_path, name):
    installed(tmp_path, name)
    result = systemd_analyze("security", "--offline=yes", f"--threshold={MAX_EXPOSURE * 10:.0f}", f"./{UNITS[name]}",
                             cwd=tmp_path)  # fmt: skip
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert exposure and float(exposure.group(1)) <= MAX_EXPOSURE, result.stdout[-2000:]
    text = (SYSTEMD / name).read_text()
    for option in ("User=velesio", "NoNewPrivileges=yes", "ProtectSystem=strict", "EnvironmentFile=/etc/velesio/"):
        assert option in text, f"{name} lacks {option}"
    assert re.search(r"^Restart=on-failure$", text, re.M)


def stop_timeout(name: str) -> float:
    return float(re.search(r"^TimeoutStopSec=(\d+)s$", (SYSTEMD / name).read_text(), re.M).group(1))


def test_stop_timeouts_cover_each_service_s_drain():
    assert stop_timeout("velesio-api.service") > gunicorn_options(Settings.from_env({}))["graceful_timeout"]
    assert stop_timeout("velesio-worker@.service") > Settings.from_env({}).drain_timeout_s + ACK_GRACE_S
    for name in UNITS:
        # SIGTERM to the service alone: it stops its children (gunicorn's workers, llama-server).
        assert re.search(r"^KillMode=mixed$", (SYSTEMD / name).read_text(), re.M), name


def test_every_variable_the_units_and_env_file_set_is_a_setting():
    known = known_variables()
    example = (SYSTEMD / "velesio.env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    for name in UNITS:
        names |= set(re.findall(r"^Environment=([A-Z0-9_]+)=", (SYSTEMD / name).read_text(), re.M))
    # CUDA's own variable (which GPU the worker sees), not velesio's.
    assert names - known == {"CUDA_VISIBLE_DEVICES"}
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", example, re.M))
    Settings.from_env(values).require_tokens()  # the example's values are valid settings
