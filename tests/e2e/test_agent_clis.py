"""Codex CLI and Claude Code, from the npm registry, driven non-interactively against velesio.

Each CLI gets one prompt and must print one answer without an error, having spoken only to
velesio (its base URL points there; it has no other credentials). Where a CLI cannot be
installed or run here, its test says exactly what it tried and skips; the requests each CLI
sends (recorded from the pinned versions with the same options, ids zeroed, in recorded/) are
replayed against velesio either way, and the answers checked the way the CLI reads them.

The options trim each CLI's prompt to what the tiny model's context holds (Codex's own
instructions and its optional tools, Claude Code's system prompt and tools): with a real model
none of them is needed. Each CLI's llama-server is given a bias towards the end-of-turn token, so
that the tiny model's random answers end on their own (both CLIs take an answer cut at a token
limit as an error); Codex's is smaller, as its prompt offers tools, which already make the tiny
model's end of turn likelier (tiny_model.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import start_stack

CODEX = "@openai/codex@0.171.0"
CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.332"
RECORDED = Path(__file__).parent / "recorded"
PROMPT = "say hi"
# The end-of-turn token of the tiny model is 4 (<|im_end|>, tiny_model.py).


def agent_stack(redis_server, tiny_model, logs_dir, *, database: int, end_of_turn_bias: int):
    llama_args = f"--threads 1 --logit-bias 4+{end_of_turn_bias}"
    running = start_stack(redis_server.url(database), tiny_model, logs_dir, name=f"agents-{database}",
                          LLAMA_SLOTS="1", LLAMA_CTX="16384", LLAMA_SERVER_ARGS=llama_args)  # fmt: skip
    return running


@pytest.fixture(scope="module")
def codex_stack(redis_server, tiny_model, logs_dir):
    running = agent_stack(redis_server, tiny_model, logs_dir, database=14, end_of_turn_bias=12)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def claude_stack(redis_server, tiny_model, logs_dir):
    running = agent_stack(redis_server, tiny_model, logs_dir, database=15, end_of_turn_bias=23)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clis(tmp_path_factory) -> Path:
    """The two CLIs, installed with npm into a folder of their own."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not on PATH, so `npm install {CODEX} {CLAUDE_CODE}` could not run")
    folder = tmp_path_factory.mktemp("agent-clis")
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), CODEX, CLAUDE_CODE]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"`{' '.join(command)}` did not finish in 600 s (is the npm registry reachable?)")
    if done.returncode != 0:
        pytest.skip(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr[-800:]}")
    return folder / "node_modules" / ".bin"


def cli_env(home: Path, **values: str) -> dict[str, str]:
    """A clean home (no user config, no stored logins) and no vendor credentials."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OPENAI_", "ANTHROPIC_", "CODEX_", "CLAUDE_"))}  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    return env | {"HOME": str(home), "NO_COLOR": "1"} | values


def run_cli(command: list[str], env: dict[str, str], cwd: Path, vendor: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` did not finish in 300 s")
    said = done.stdout + done.stderr
    if done.returncode != 0 and vendor in said:
        pytest.skip(f"`{' '.join(command)}` insists on reaching {vendor}: {said[-800:]}")
    return done


def codex_command(bin: Path, stack, instructions: Path) -> list[str]:
    provider = (f'model_providers.velesio={{name="velesio",base_url="{stack.url("/v1")}",env_key="VELESIO_API_KEY",'
                'wire_api="responses",request_max_retries=0,stream_max_retries=0}')  # fmt: skip
    return [
        str(bin / "codex"), "exec", "--skip-git-repo-check", "-m", "tiny",
        "-c", "model_provider=velesio", "-c", provider,
        "-c", f'model_instructions_file="{instructions}"', "-c", 'web_search="disabled"',
        "-c", "include_permissions_instructions=false", "-c", "include_apps_instructions=false",
        "-c", "include_environment_context=false", "-c", "skills.include_instructions=false",
        "--disable", "multi_agent", "--disable", "goals", "--disable", "view_image",
        PROMPT,
    ]  # fmt: skip


def test_codex_answers_through_velesio(clis, codex_stack, tmp_path):
    instructions = tmp_path / "instructions.md"
    instructions.write_text("Be brief.\n")
    env = cli_env(tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"), VELESIO_API_KEY=codex_stack.token)
    Path(env["CODEX_HOME"]).mkdir()
    done = run_cli(codex_command(clis, codex_stack, instructions), env, tmp_path, "api.openai.com")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), done.stderr[-2000:]
    assert "ERROR" not in done.stderr, done.stderr[-2000:]


def test_claude_code_answers_through_velesio(clis, claude_stack, tmp_path):
    env = cli_env(tmp_path / "home", ANTHROPIC_BASE_URL=claude_stack.url(""), ANTHROPIC_API_KEY=claude_stack.token,
                  CLAUDE_CODE_MAX_OUTPUT_TOKENS="64", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")  # fmt: skip
    command = [str(clis / "claude"), "-p", PROMPT, "--model", "tiny", "--bare", "--system-prompt", "Be brief.",
               "--tools", ""]  # fmt: skip
    done = run_cli(command, env, tmp_path, "api.anthropic.com")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip()
    assert "issue with the selected model" not in done.stdout and "API Error" not in done.stdout, done.stdout


def sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event", ""), json.loads(lines["data"])))
    return events


def replay(stack, name: str) -> list[tuple[str, dict]]:
    recorded = json.loads((RECORDED / name).read_text())
    headers = recorded["headers"] | {"Authorization": f"Bearer {stack.token}", "x-api-key": stack.token}
    response = requests.post(stack.url(recorded["path"]), json=recorded["body"], headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return sse(response.text)


def test_codexs_recorded_request_gets_the_stream_codex_reads(codex_stack):
    events = replay(codex_stack, "codex-0.171.0-responses.json")
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    # Codex reads the items from output_item.done and the token counts from the completed response.
    done_items = [data["item"] for name, data in events if name == "response.output_item.done"]
    assert done_items == final["output"] and final["usage"]["output_tokens"] > 0
    assert final["store"] is False


def test_claude_codes_recorded_request_gets_the_stream_claude_code_reads(claude_stack):
    events = replay(claude_stack, "claude-code-2.1.332-messages.json")
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens") and delta["usage"]["output_tokens"] <= 64
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text
