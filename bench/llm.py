"""The LLM figures: added latency, added time to first token, throughput and cancellation, each
measured side by side against the same llama-server the gateway's worker uses."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

import requests

from bench.report import Section, ms, percentile

BODY = {"prompt": "The knight looks at the dragon and says", "n_predict": 8, "seed": 1}
#: The pause before a request of the idle rows: long enough for every process to go back to sleep.
IDLE_S = 1.0


class Client:
    """One keep-alive HTTP/1.1 connection, as lean as a Python client gets, so that client overhead
    is small and the same on both sides."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname, parts.port
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._connection = http.client.HTTPConnection(self._host, self._port)

    def _send(self, path: str, body: dict) -> http.client.HTTPResponse:
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self._connection.request("POST", path, body=data, headers=self._headers)
                return self._connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # llama-server closes a connection after 100 requests; reconnect and resend.
                self._connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def whole(self, path: str, body: dict) -> float:
        started = time.perf_counter()
        response = self._send(path, body)
        payload = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {payload[:200]!r}")
        return elapsed

    def first_token(self, path: str, body: dict) -> float:
        return self.first_content(path, {**body, "stream": True}, _has_text)

    def first_content(self, path: str, body: dict, has_content) -> float:
        """Until the first line of the stream that carries generated text (llama-server's first
        chat chunk carries only the role; an Ollama stream is NDJSON)."""
        started = time.perf_counter()
        response = self._send(path, body)
        buffer = b""
        while True:
            data = response.read1(65536)
            if not data or response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {buffer[:200]!r} {data[:200]!r}")
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            if any(has_content(line) for line in lines):
                elapsed = time.perf_counter() - started
                response.read()
                return elapsed


def _has_text(line: bytes) -> bool:
    if line.startswith(b"data: "):
        line = line[6:]
    if not line.startswith(b"{"):
        return False
    value = json.loads(line)
    if value.get("type") == "response.output_text.delta":  # OpenAI Responses' event
        return bool(value["delta"])
    if value.get("type") == "content_block_delta":  # Anthropic's event
        return bool(value["delta"].get("text"))
    if "content" in value:  # llama.cpp's chunk
        return bool(value["content"])
    if value.get("choices"):  # OpenAI's chunk
        return bool((value["choices"][0].get("delta") or {}).get("content"))
    return bool((value.get("message") or {}).get("content"))  # Ollama's line


def paired(measure_direct, measure_gateway, samples: int, *, warmup: int = 30) -> tuple[list[float], list[float]]:
    """Alternate the two sides request by request, so drift on a shared machine hits both alike
    (after ``warmup`` unmeasured rounds)."""
    for _ in range(warmup):
        measure_direct()
        measure_gateway()
    direct, gateway = [], []
    for _ in range(samples):
        direct.append(measure_direct())
        gateway.append(measure_gateway())
    return direct, gateway


def latency(section: Section, direct_url: str, api_url: str, auth: dict[str, str], samples: int) -> dict:
    direct, gateway = Client(direct_url), Client(api_url, auth)
    d, g = paired(lambda: direct.whole("/completion", BODY), lambda: gateway.whole("/completion", BODY), samples)
    added50 = percentile(g, 0.5) - percentile(d, 0.5)
    added99 = percentile(g, 0.99) - percentile(d, 0.99)
    section.add("a. whole /completion (n_predict 8), direct p50 / p99",
                f"{ms(percentile(d, .5))} / {ms(percentile(d, .99))}")  # fmt: skip
    section.add("a. through velesio p50 / p99", f"{ms(percentile(g, 0.5))} / {ms(percentile(g, 0.99))}")
    section.add("a. **added latency** p50", ms(added50), "≤ 1.0 ms", added50 <= 0.001)
    section.add("a. **added latency** p99", ms(added99), "≤ 3 ms", added99 <= 0.003)

    idle_samples = max(5, min(30, samples // 25))
    d, g = [], []
    for _ in range(idle_samples):
        time.sleep(IDLE_S)
        d.append(direct.whole("/completion", BODY))
        time.sleep(IDLE_S)
        g.append(gateway.whole("/completion", BODY))
    added_idle = percentile(g, 0.5) - percentile(d, 0.5)
    section.add(f"a. whole /completion after {IDLE_S:g} s idle ({idle_samples} each side), direct p50 / through "
                f"velesio p50", f"{ms(percentile(d, .5))} / {ms(percentile(g, .5))}")  # fmt: skip
    section.add(f"a. **added latency after {IDLE_S:g} s idle** p50", ms(added_idle), "≤ 2 ms", added_idle <= 0.002)

    d, g = paired(lambda: direct.first_token("/completion", BODY), lambda: gateway.first_token("/completion", BODY),
                   samples)  # fmt: skip
    added_ttft = percentile(g, 0.5) - percentile(d, 0.5)
    section.add("b. time to first streamed token, direct p50 / through velesio p50",
                f"{ms(percentile(d, .5))} / {ms(percentile(g, .5))}")  # fmt: skip
    section.add("b. **added time to first token** p50", ms(added_ttft), "≤ 2 ms", added_ttft <= 0.002)
    return {"added_p50_ms": added50 * 1000, "added_ttft_p50_ms": added_ttft * 1000}


CHAT = {"messages": [{"role": "user", "content": "Greet the king"}], "max_tokens": 8, "seed": 1}
OLLAMA_CHAT = {"messages": CHAT["messages"], "options": {"num_predict": 8, "seed": 1}}


def chat_latency(section: Section, direct_url: str, api_url: str, auth: dict[str, str], model: str, samples: int):
    """OpenAI's, Ollama's, OpenAI Responses' and Anthropic's chat through velesio against
    llama-server's own chat endpoint (the same chat: one user message, 8 tokens)."""
    direct, gateway = Client(direct_url), Client(api_url, auth)
    openai_body, ollama_body = {**CHAT, "model": model}, {**OLLAMA_CHAT, "model": model}
    responses_body = {"model": model, "input": CHAT["messages"], "max_output_tokens": 8, "store": False}
    anthropic_body = {"model": model, "messages": CHAT["messages"], "max_tokens": 8}
    base = lambda: direct.whole("/v1/chat/completions", CHAT)  # noqa: E731
    for name, path, body in (("/v1/chat/completions", "/v1/chat/completions", openai_body),
                             ("/api/chat", "/api/chat", {**ollama_body, "stream": False}),
                             ("/v1/responses", "/v1/responses", responses_body),
                             ("/v1/messages", "/v1/messages", anthropic_body)):  # fmt: skip
        d, g = paired(base, lambda path=path, body=body: gateway.whole(path, body), samples)
        added = percentile(g, 0.5) - percentile(d, 0.5)
        section.add(f"f. whole chat (8 tokens) via {name}, added p50 / p99 over llama-server's chat",
                    f"{ms(added)} / {ms(percentile(g, .99) - percentile(d, .99))}")  # fmt: skip

    base_first = lambda: direct.first_content("/v1/chat/completions", {**CHAT, "stream": True}, _has_text)  # noqa: E731
    for name, path, body in (("/v1/chat/completions", "/v1/chat/completions", {**openai_body, "stream": True}),
                             ("/api/chat", "/api/chat", ollama_body),
                             ("/v1/responses", "/v1/responses", {**responses_body, "stream": True}),
                             ("/v1/messages", "/v1/messages", {**anthropic_body, "stream": True})):  # fmt: skip
        d, g = paired(base_first, lambda path=path, body=body: gateway.first_content(path, body, _has_text), samples)
        section.add(f"g. time to first chat token via {name}, added p50", ms(percentile(g, 0.5) - percentile(d, 0.5)))


def _wrk(url: str, token: str | None, seconds: int, connections: int, body: dict) -> float:
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if token:
        headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    script = f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n{headers}'
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        output = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", lua.name, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def _ratio(direct_url: str, api_url: str, token: str, seconds: int, rounds: int, body: dict) -> tuple[float, float]:
    direct, gateway = [], []
    for _ in range(rounds):
        direct.append(_wrk(direct_url + "/completion", None, seconds, 8, body))
        gateway.append(_wrk(api_url + "/completion", token, seconds, 8, body))
    return sorted(direct)[len(direct) // 2], sorted(gateway)[len(gateway) // 2]


def throughput(section: Section, direct_url: str, api_url: str, token: str, seconds: int, rounds: int) -> float:
    d, g = _ratio(direct_url, api_url, token, seconds, rounds, BODY)
    ratio = g / d
    section.add("c. 8 concurrent clients (wrk), whole answers of 8 tokens, direct / through velesio",
                f"{d:,.0f} / {g:,.0f} req/s")  # fmt: skip
    section.add("c. **throughput ratio** to direct", f"{ratio:.2f}", "≥ 0.5", ratio >= 0.5)
    for tokens, target in ((64, None), (128, 0.85)):
        d, g = _ratio(direct_url, api_url, token, seconds, 1, {**BODY, "n_predict": tokens, "ignore_eos": True})
        label = f"c. the same with answers of {tokens} tokens: direct / through velesio / ratio"
        if target is None:
            section.add(label, f"{d:,.0f} / {g:,.0f} req/s / {g / d:.2f}")
        else:
            section.add(label.replace("ratio", "**ratio**"), f"{d:,.0f} / {g:,.0f} req/s / {g / d:.2f}",
                        f"≥ {target:g}", g / d >= target)  # fmt: skip
    return ratio


def throughput_with(section: Section, label: str, direct_url: str, api_url: str, token: str, seconds: int,
                    rounds: int) -> None:  # fmt: skip
    """The 8-client figure of :func:`throughput` on another stack: direct / through velesio / ratio."""
    d, g = _ratio(direct_url, api_url, token, seconds, rounds, BODY)
    section.add(label + ": direct / through velesio / ratio", f"{d:,.0f} / {g:,.0f} req/s / {g / d:.2f}")


def cancellation(section: Section, direct_url: str, api_url: str, auth: dict[str, str], samples: int) -> None:
    """From the client closing its connection mid-stream to llama-server's slot being free again."""
    delays = []
    for _ in range(samples):
        body = {"prompt": "a long tale", "n_predict": 4000, "ignore_eos": True, "stream": True}
        response = requests.post(api_url + "/completion", headers=auth, json=body, stream=True, timeout=30)
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
        response.close()
        closed = time.perf_counter()
        while any(slot["is_processing"] for slot in requests.get(direct_url + "/slots", timeout=5).json()):
            pass
        delays.append(time.perf_counter() - closed)
    section.add("e. client disconnect → llama-server slot free, p50 / max",
                f"{ms(percentile(delays, 0.5))} / {ms(max(delays))}",
                "≤ 100 ms", max(delays) <= 0.1)  # fmt: skip
