"""The gateway's CPU per job and per relayed token: the CPU time its processes report (/proc)
over a fixed load, divided by the jobs completed or the tokens relayed."""

from __future__ import annotations

import time
from collections import Counter

from bench.llm import BODY
from bench.procs import GATEWAY, ROLES, StackProcesses, spent
from bench.report import Section
from bench.wrk import wrk
from tests.support.processes import RedisServer, Stack, llama_metric

CLIENTS = 8
STREAM = {**BODY, "n_predict": 128, "ignore_eos": True, "stream": True}


def _per(cpu: dict[str, float], count: float, unit: float) -> str:
    return " / ".join(f"{cpu[role] / count / unit:.{1 if unit < 1e-3 else 3}f}" for role in ROLES)


def _commands(redis: RedisServer) -> Counter[str]:
    """Redis's count of the commands it ran, by name (INFO commandstats)."""
    stats = redis.client().info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()})


def _per_command(before: Counter[str], after: Counter[str], count: float) -> str:
    ran = after - before
    ran["info"] -= 1  # the reading of ``after`` itself
    top = ", ".join(f"{name} {calls / count:.2f}" for name, calls in ran.most_common(5) if calls > 0)
    return f"{ran.total() / count:.1f} ({top})"


def gateway_cpu(section: Section, stack: Stack, redis: RedisServer, seconds: float) -> tuple[float, float]:
    """Adds the rows; returns the gateway's CPU per job and per relayed token, in seconds."""
    processes = StackProcesses.of(stack, redis)
    headers = stack.auth

    before = processes.cpu()
    time.sleep(seconds / 2)
    idle = spent(before, processes.cpu())
    section.add("CPU of API + worker + Redis at rest, per second",
                f"{sum(idle[role] for role in GATEWAY) / (seconds / 2) * 1000:.2f} ms")  # fmt: skip

    wrk(stack.base_url + "/completion", BODY, seconds=1, connections=CLIENTS, headers=headers)  # warm up
    before, commands = processes.cpu(), _commands(redis)
    run = wrk(stack.base_url + "/completion", BODY, seconds=seconds, connections=CLIENTS, headers=headers)
    cpu, commands_after = spent(before, processes.cpu()), _commands(redis)
    gateway = per_job = sum(cpu[role] for role in GATEWAY) / run.requests
    section.add(f"a. whole /completion (8 tokens), {CLIENTS} clients (wrk) for {seconds:g} s: jobs done, jobs/s",
                f"{run.requests:,} / {run.rate:,.0f}")  # fmt: skip
    section.add("a. CPU per job: API / worker / Redis / llama-server", _per(cpu, run.requests, 1e-3) + " ms")
    section.add("a. **gateway CPU per job** (API + worker + Redis)", f"{gateway * 1000:.3f} ms", "≤ 0.6 ms",
                gateway <= 0.0006)  # fmt: skip
    section.add("a. Redis commands per job (the most frequent, per job)", _per_command(commands, commands_after,
                run.requests))  # fmt: skip

    tokens_before = llama_metric(stack.llama_url, "llamacpp:tokens_predicted_total")
    before, commands = processes.cpu(), _commands(redis)
    run = wrk(stack.base_url + "/completion", STREAM, seconds=seconds, connections=CLIENTS, headers=headers)
    cpu, commands_after = spent(before, processes.cpu()), _commands(redis)
    tokens = llama_metric(stack.llama_url, "llamacpp:tokens_predicted_total") - tokens_before
    gateway = sum(cpu[role] for role in GATEWAY) / tokens
    section.add(f"b. streamed /completion (128 tokens), {CLIENTS} clients for {seconds:g} s: streams done, tokens",
                f"{run.requests:,} / {tokens:,.0f}")  # fmt: skip
    section.add("b. CPU per relayed token: API / worker / Redis / llama-server", _per(cpu, tokens, 1e-6) + " µs")
    section.add("b. **gateway CPU per relayed token** (API + worker + Redis)", f"{gateway * 1e6:.1f} µs", "≤ 15 µs",
                gateway <= 15e-6)  # fmt: skip
    section.add("b. Redis commands per relayed token (the most frequent, per token)",
                _per_command(commands, commands_after, tokens))  # fmt: skip

    section.notes += [
        "CPU is user + system time from /proc/<pid>/stat, read before and after the load, of each process of",
        "the stack: the API (gunicorn's master and its workers), the worker (the Python process, all its",
        "threads), Redis, and the worker's llama-server beside them for scale. The gateway is API + worker +",
        "Redis: what velesio adds in front of llama-server. The load is wrk with 8 keep-alive connections",
        "through velesio (its own CPU is not counted, but it shares the cores). Per job divides by the",
        "requests wrk completed; per token divides by the tokens llama-server generated in the window",
        "(its llamacpp:tokens_predicted_total), which velesio relays as one stream event per token (the",
        "8 streams cut at the window's end count their tokens so far); the per-token figure carries each",
        "stream's per-job cost too, spread over its 128 tokens. The first row is what the same processes",
        "spend with no load, included in the others; /proc counts in ticks of 10 ms per process. The",
        "Redis rows count the commands Redis ran in the same windows (INFO commandstats), all clients',",
        "those a Lua script runs included (an EVALSHA of emit.lua is also its SISMEMBER and XADD).",
    ]
    return per_job, gateway
