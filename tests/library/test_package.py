"""velesio-core as a user gets it: the wheel and sdist that ``python -m build`` makes, installed into
a fresh virtualenv with only the core's dependencies (from PyPI, as pip fetches them), imported,
type-checked from outside (py.typed), and extended with the example backend through its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.processes import ROOT

CORE = ROOT / "libs" / "velesio_core"
EXAMPLE = ROOT / "examples" / "markov_backend"

USER_PROGRAM = """
from velesio_core import Client
from velesio_core.client import Completion, Token, VelesioError

def first_words(client: Client) -> str:
    answer: Completion = client.complete("Once", max_tokens=4)
    for event in client.chat([{"role": "user", "content": "hi"}], stream=True):
        if isinstance(event, Token):
            return answer.text + event.text
    return answer.text
"""


#: Without this checkout on the path (the suite runs with PYTHONPATH set to it): only what was installed.
CLEAN_ENV = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MYPYPATH")}


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=900, env=CLEAN_ENV
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, CORE)
    return out


@pytest.fixture(scope="module")
def fresh_venv(dist, tmp_path_factory) -> Path:
    """A virtualenv with nothing but the built wheel and what its metadata asks for."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    (wheel,) = dist.glob("velesio_core-*.whl")
    run(home / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    return home


def test_the_wheel_carries_the_types_and_data_and_nothing_else(dist):
    (wheel,) = dist.glob("velesio_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    assert "velesio_core/py.typed" in names
    # The Lua scripts, those only included by others too (hand_back.lua).
    assert {"velesio_core/queue/fairq.lua", "velesio_core/queue/hand_back.lua"} <= set(names)
    assert "velesio_core/client/aio.py" in names
    assert not [name for name in names if name.startswith(("tests/", "examples/"))]
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # torch only with the images extra.
    assert all("extra ==" in line for line in requires if "torch" in line)
    (sdist,) = dist.glob("velesio_core-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(member.endswith("velesio_core/py.typed") for member in members)
    assert any(member.endswith("/pyproject.toml") for member in members)


def test_the_installed_package_imports_with_only_the_cores_dependencies(fresh_venv):
    installed = run(fresh_venv / "bin" / "python", "-m", "pip", "list", "--format=freeze").lower()
    assert "velesio-core==" in installed
    assert "torch" not in installed and "diffusers" not in installed
    probe = (
        "import sys, velesio_core, velesio_core.client, velesio_core.backend_plugins, velesio_core.results, "
        "velesio_core.errors\n"
        "for module in (velesio_core, velesio_core.client, velesio_core.backend_plugins, velesio_core.results, "
        "velesio_core.errors):\n"
        "    missing = [name for name in module.__all__ if not hasattr(module, name)]\n"
        "    assert not missing, (module.__name__, missing)\n"
        "assert 'torch' not in sys.modules\n"
        "print(velesio_core.__file__)\n"
    )
    location = run(fresh_venv / "bin" / "python", "-c", probe, cwd=fresh_venv)
    assert str(fresh_venv) in location  # the installed copy, not this checkout's


def test_a_user_program_type_checks_against_the_installed_package(fresh_venv, tmp_path):
    program = tmp_path / "bot.py"
    program.write_text(USER_PROGRAM)
    run(sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
        fresh_venv / "bin" / "python", program, cwd=tmp_path)  # fmt: skip
    program.write_text(USER_PROGRAM.replace("max_tokens=4)", 'max_tokens="four")'))
    refused = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
         str(fresh_venv / "bin" / "python"), str(program)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=CLEAN_ENV,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stdout
    assert "max_tokens" in refused.stdout


def test_the_example_backend_is_found_through_its_entry_point(fresh_venv):
    run(fresh_venv / "bin" / "python", "-m", "pip", "install", "--quiet", EXAMPLE)
    probe = (
        "from velesio_core.backend_plugins import load_backend\n"
        "backend = load_backend('markov')\n"
        "print(type(backend).__module__, [model.id for model in backend.models()])\n"
    )
    assert run(fresh_venv / "bin" / "python", "-c", probe, cwd=fresh_venv).split() == [
        "velesio_markov.backend",
        "['markov-tale']",
    ]
