"""deploy/compose.yaml, without a container engine (none runs here): valid under the Compose
Specification's JSON schema (the copy check-jsonschema ships, vendor.compose-spec), and every
image, port, variable and volume it gives velesio's services exists in velesio's images and
settings. Its Redis command runs here too, on Debian's redis-server, with the committed config.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

import velesio_core
from tests.deploy.variables import known_variables
from tests.support.processes import ROOT, free_port, wait_until
from velesio_api.main import gunicorn_options
from velesio_core.settings import Settings
from velesio_worker.main import ACK_GRACE_S

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
VELESIO_IMAGES = ("velesio-api", "velesio-worker", "velesio-worker-cuda")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def velesio_services() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items() if image_name(service) in VELESIO_IMAGES}


def default_of(text: str) -> str:
    """A ``${VAR:-default}`` value as compose resolves it with VAR unset (plain text unchanged)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def image_name(service: dict) -> str:
    return default_of(service["image"]).rsplit("/", 1)[-1].split(":")[0].split("@")[0]


def interpolated(text: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))


def test_the_compose_file_is_valid_under_the_compose_specification():
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*command, str(COMPOSE), str(ROOT / "monitoring" / "compose.yaml")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("correct", "broken"),
    [
        ("healthcheck:", "healthchek:"),
        ("    ports:\n      - 127.0.0.1:8000:8000", "    ports: 8000"),
        ("  redis-data: {}", "  redis-data: 12"),
    ],
)
def test_the_schema_check_refuses_a_broken_compose_file(tmp_path, correct, broken):
    """The check above can fail: a misspelt key, a wrong type."""
    mutated = tmp_path / "compose.yaml"
    assert correct in COMPOSE.read_text()
    mutated.write_text(COMPOSE.read_text().replace(correct, broken, 1))
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    assert subprocess.run([*command, str(mutated)], capture_output=True).returncode != 0


def test_velesio_images_are_the_ones_the_builds_make_at_this_version():
    built = re.findall(r"^image (velesio-[a-z-]+) ", (ROOT / "images/build.sh").read_text(), re.M)
    nix = re.findall(r'name = "(velesio-[a-z-]+)";', (ROOT / "nix/images.nix").read_text())
    version = velesio_core.__version__  # the version of the three packages, which images/build.sh tags
    services = velesio_services()
    assert {image_name(service) for service in services.values()} == set(VELESIO_IMAGES)
    for name, service in services.items():
        image = default_of(service["image"])
        assert image_name(service) in built + nix, f"{name}: {image} is built by neither make images nor the flake"
        assert image.endswith(f":{version}"), f"{name}: {image} is not tagged with velesio's version {version}"


def test_third_party_images_are_pinned_to_a_version():
    for name, service in compose()["services"].items():
        if image_name(service) in VELESIO_IMAGES:
            continue
        tag = service["image"].rpartition(":")[2]
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{name}: {service['image']} is not pinned to a release"


def test_every_variable_given_to_velesio_is_a_setting_it_reads():
    known = known_variables()
    for name, service in velesio_services().items():
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which velesio does not read"


def test_every_value_given_to_velesio_is_one_its_settings_accept():
    for _name, service in velesio_services().items():
        env = {key: default_of(str(value)) for key, value in service["environment"].items()}
        env = {key: value for key, value in env.items() if "${" not in value}  # required secrets
        Settings.from_env(env)  # raises SettingsError naming the variable


def test_ports_are_the_ones_the_services_listen_on():
    services = compose()["services"]
    api_env = services["api"]["environment"]
    api_port = Settings.from_env({"API_PORT": api_env["API_PORT"]}).api_port
    assert [p.rsplit(":", 1)[1] for p in services["api"]["ports"]] == [str(api_port)]
    # The image declares the same port.
    assert "--port 8000/tcp" in (ROOT / "images/build.sh").read_text() and api_port == 8000
    assert default_of(services["caddy"]["environment"]["VELESIO_UPSTREAM"]) == f"api:{api_port}"
    for name, service in velesio_services().items():
        if name == "api":
            continue
        metrics_port = Settings.from_env({"METRICS_PORT": service["environment"]["METRICS_PORT"]}).metrics_port
        assert [p.rsplit(":", 1)[1] for p in service["ports"]] == [str(metrics_port)], name


def test_volumes_hold_what_the_settings_point_at():
    document = compose()
    declared = set(document["volumes"])
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = default_of(volume).split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name}: volume {source} is not declared"
            elif volume.endswith(":ro") and source.startswith("."):  # configuration from the repository
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"
    for name, service in velesio_services().items():
        if name == "api":
            continue
        env = {key: default_of(str(value)) for key, value in service["environment"].items()}
        settings = Settings.from_env({key: value for key, value in env.items() if "${" not in value})
        targets = [Path(default_of(volume).split(":")[1]) for volume in service["volumes"]]
        assert settings.models_dir in targets, f"{name}: MODELS_DIR {settings.models_dir} is not a volume"
        assert settings.model_path.is_relative_to(settings.models_dir)


def test_every_interpolated_variable_is_documented_in_the_env_example():
    example = (DEPLOY / "compose.env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, re.M))
    used = interpolated(COMPOSE.read_text()) | interpolated((ROOT / "monitoring/compose.yaml").read_text())
    assert used - documented == set()
    assert documented - used == set(), "documented but unused"


def test_stop_grace_periods_cover_the_services_own_drains():
    services = compose()["services"]

    def seconds(text: str) -> float:
        return float(text.rstrip("s"))

    graceful = gunicorn_options(Settings.from_env({}))["graceful_timeout"]
    assert seconds(services["api"]["stop_grace_period"]) > graceful
    for name, service in velesio_services().items():
        if name != "api":
            assert seconds(service["stop_grace_period"]) > Settings.from_env({}).drain_timeout_s + ACK_GRACE_S, name
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service or image_name(service) == "velesio-worker-cuda", name


def test_gpu_workers_reserve_their_own_nvidia_gpu():
    reserved = []
    for _name, service in velesio_services().items():
        if image_name(service) != "velesio-worker-cuda":
            continue
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        reserved += device["device_ids"]
    assert len(reserved) == len(set(reserved)) >= 1


def test_redis_starts_with_the_compose_command_and_persists(tmp_path):
    """The redis service's own shell command, on Debian's redis-server: the committed config
    loads, the password from the environment is required, and the append-only file is on."""
    service = compose()["services"]["redis"]
    script = service["command"][2]
    port = free_port()
    config = (DEPLOY / "redis/redis.conf").read_text().replace("dir /data", f"dir {tmp_path}")
    (tmp_path / "redis.conf").write_text(config + f"port {port}\nbind 127.0.0.1\n")
    script = script.replace("/usr/local/etc/redis/redis.conf", str(tmp_path / "redis.conf"))
    script = script.replace("/tmp/redis.conf", str(tmp_path / "run.conf"))
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "REDIS_PASS": "0123abcd"}
    process = subprocess.Popen(["sh", "-c", script.replace("$$", "$")], env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        client = redis.Redis(port=port, password="0123abcd")

        def answers() -> bool:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=10, what="redis-server from the compose command")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        health = service["healthcheck"]["test"][1].replace("$$", "$").replace("redis-cli", f"redis-cli -p {port}")
        assert subprocess.run(["sh", "-c", health], env=env).returncode == 0
        assert subprocess.run(["sh", "-c", health], env=env | {"REDIS_PASS": "wrong"}).returncode != 0
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert shutil.which("redis-server")
