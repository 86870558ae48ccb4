"""The counts velesio derives from the machine when the operator sets none."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from velesio_core import machine
from velesio_core.backends.llamacpp.process import LlamaServerProcess
from velesio_core.settings import Settings


def affinity() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", affinity()),
        ("100000 100000\n", 1),
        ("150000 100000\n", min(2, affinity())),  # 1.5 CPUs: a second one, part-time
        ("1000000000 100000\n", affinity()),  # a quota larger than the CPUs there are
        ("garbage\n", affinity()),
    ],
)
def test_a_containers_cpu_quota_caps_the_cpus(tmp_path, cpu_max, expected):
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max)
    assert machine.usable_cpus(quota) == expected


def test_without_a_cgroup_quota_the_affinity_counts(tmp_path):
    assert machine.usable_cpus(tmp_path / "absent") == affinity()


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 3), (8, 6), (64, 62)])
def test_cpu_generation_leaves_the_gateway_a_core_or_two(cpus, threads):
    assert machine.llama_threads(cpus, gpu_layers=0) == threads


@pytest.mark.parametrize("gpu_layers", [-1, 99])
def test_with_layers_on_a_gpu_llama_cpp_chooses(gpu_layers):
    assert machine.llama_threads(16, gpu_layers) == 0


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4), (128, 8)])
def test_api_processes_grow_with_the_machine_up_to_eight(cpus, workers):
    assert machine.api_workers(cpus) == workers


def test_settings_take_the_machines_counts_unless_told_otherwise():
    cpus = machine.usable_cpus()
    derived = Settings.from_env({})
    assert derived.llama_threads == machine.llama_threads(cpus, 0)
    assert derived.api_workers == machine.api_workers(cpus)
    assert Settings.from_env({"GPU_LAYERS": "99"}).llama_threads == 0
    told = Settings.from_env({"LLAMA_THREADS": "7", "API_WORKERS": "3"})
    assert (told.llama_threads, told.api_workers) == (7, 3)


def test_llama_server_gets_its_threads_and_the_operators_arguments_after_them(tmp_path):
    def command(**fields) -> list[str]:
        return LlamaServerProcess("llama-server", tmp_path / "m.gguf", tmp_path / "s.sock", 4, 512, **fields).command()

    threads = command(threads=3, extra_args=("--threads", "5"))
    assert threads[threads.index("--threads") + 1] == "3"
    assert threads[-2:] == ["--threads", "5"]  # the operator's come last: llama.cpp takes the last
    assert "--threads" not in command(threads=0)


def test_the_open_files_limit_is_raised_to_the_hard_limit():
    # In a child with systemd's default soft limit, so this test process keeps its own.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))\n"
        "from velesio_core.machine import raise_open_files_limit\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["(4096,", "4096)", "(4096,", "4096)"]
