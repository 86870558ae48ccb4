"""The one pinned dependency set: uv.lock, the hash-checked files exported from it, and the venv
that `make test` runs in, all in agreement with the three pyprojects."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT, VENV_PYTHON, run, venv_env

LOCKS = ROOT / "requirements" / "lock"
PACKAGES = ["libs/velesio_core", "services/api", "services/worker"]
LOCAL = {"velesio-core", "velesio-api", "velesio-worker"}


def pins(path) -> dict[tuple[str, str], str]:
    """{(name, marker): version} of a hashed requirements file; every entry must carry hashes."""
    text = path.read_text()
    found = {}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        first = block.splitlines()[0]
        if not first or first.startswith("#"):
            continue
        requirement = Requirement(first.rstrip(" \\"))
        assert "--hash=sha256:" in block, f"{path.name}: {requirement.name} has no hash"
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {first} is not pinned"
        found[(canonicalize_name(requirement.name), str(requirement.marker or ""))] = specifier.version
    return found


def by_name(pinned: dict[tuple[str, str], str]) -> dict[str, str]:
    return {name: version for (name, _marker), version in pinned.items()}


def unlocked() -> dict[str, Requirement]:
    lines = (ROOT / "requirements" / "unlocked.txt").read_text().splitlines()
    return {canonicalize_name(r.name): r for r in (Requirement(line) for line in lines if line and line[0] != "#")}


def test_uv_lock_matches_the_pyprojects():
    # Fails when a pyproject changed without `make lock`.
    result = run(["uv", "lock", "--check", "--offline"], timeout=120, check=False, env=venv_env())
    assert result.returncode == 0, "uv.lock is stale: run `make lock`\n" + result.stderr


@pytest.mark.parametrize(
    ("export", "arguments"),
    [
        ("api.txt", ["--package", "velesio-api"]),
        ("worker.txt", ["--package", "velesio-worker", "--extra", "llama"]),
        ("nix.txt", ["--all-packages"]),
        ("all.txt", ["--all-packages", "--all-extras"]),
    ],
)
def test_exported_requirements_match_uv_lock(export, arguments):
    command = ["uv", "export", "--frozen", "--offline", "--no-dev", "--no-emit-workspace", "--no-header",
               "--format", "requirements-txt", *arguments]  # fmt: skip
    expected = run(command, timeout=120, env=venv_env()).stdout
    committed = "".join(line + "\n" for line in (LOCKS / export).read_text().splitlines() if not line.startswith("#"))
    exported = "".join(line + "\n" for line in expected.splitlines() if not line.startswith("#"))
    assert committed.strip() == exported.strip(), f"requirements/lock/{export} differs from uv.lock: run `make lock`"


def test_the_locks_agree_and_are_all_hashed():
    names = ("api.txt", "worker.txt", "nix.txt", "all.txt", "build.txt", "dev.txt")
    api, worker, nix, everything, build, dev = (pins(LOCKS / name) for name in names)
    assert api.items() <= worker.items(), "the API's pins differ from the worker's"
    assert nix.items() <= worker.items() <= everything.items()
    # The venv (dev.txt) holds exactly the versions of every package's and the build tools' pins.
    # By name: a test tool may widen a package's marker there (build wants colorama on os_name
    # "nt" too, where the packages want it on win32 only), never change its version.
    assert by_name(everything).items() <= by_name(dev).items()
    assert by_name(build).items() <= by_name(dev).items()


def test_every_declared_dependency_is_locked_at_an_allowed_version():
    """Each dependency of each pyproject (extras included) is pinned in dev.txt, which holds every
    extra, at a version its specifier allows, or is deliberately unlocked (PyTorch) with an exact
    pin and kept out of every lock."""
    locked = {name: version for (name, _), version in pins(LOCKS / "dev.txt").items()}
    outside = unlocked()
    problems = []
    for package in PACKAGES:
        project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
        extras = project.get("optional-dependencies", {}).values()
        declared = project.get("dependencies", []) + [requirement for extra in extras for requirement in extra]
        for requirement in map(Requirement, declared):
            name = canonicalize_name(requirement.name)
            if name in LOCAL:
                continue
            if name in outside:
                if name in locked or len(outside[name].specifier) != 1 or "==" not in str(outside[name].specifier):
                    problems.append(f"{name}: unlocked packages need an exact pin and no lock entry")
            elif name not in locked:
                problems.append(f"{package}: {requirement} is not locked (run `make lock`)")
            elif not requirement.specifier.contains(locked[name], prereleases=True):
                problems.append(f"{package}: {requirement} but the lock has {locked[name]}")
    assert not problems, problems


def test_test_tools_are_locked_at_allowed_versions():
    locked = {name: version for (name, _), version in pins(LOCKS / "dev.txt").items()}
    for source in ("test.txt", "tools.txt"):
        for line in (ROOT / "requirements" / source).read_text().splitlines():
            if line and not line.startswith("#"):
                requirement = Requirement(line)
                name = canonicalize_name(requirement.name)
                assert name in locked and requirement.specifier.contains(locked[name], prereleases=True), line


def test_the_venv_is_installed_from_the_lock():
    """What `make test` runs in is what the lock says (the check Bazel's toolchain makes too)."""
    checker = ROOT / "tools" / "bazel_python" / "venv_packages.py"
    result = subprocess.run([str(VENV_PYTHON), str(checker), str(LOCKS / "dev.txt")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # ...and the markers were evaluated for this interpreter, not skipped wholesale.
    assert len(result.stdout.splitlines()) > 30
    assert default_environment()["sys_platform"] == "linux"


def test_torch_stays_out_of_the_lock():
    # velesio-core[sd] needs torch; pyproject.toml excludes it from the resolution, so that no
    # lock file holds it or its CUDA packages, not even under a marker that never holds.
    manifest = tomllib.loads((ROOT / "uv.lock").read_text())["manifest"]
    assert "torch" in manifest.get("excludes", [])
    for lock in LOCKS.glob("*.txt"):
        torch = [name for name, _ in pins(lock) if name == "torch" or name.startswith("nvidia-")]
        assert not torch, f"{lock.name} pins {torch}"
