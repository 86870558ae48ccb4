"""What velesio_core.Client adds: the same completion through the Python client (straight onto
Redis), through the HTTP API, and from llama-server directly, the three sides alternating request
by request."""

from __future__ import annotations

import time

from bench.llm import BODY, Client
from bench.report import Section, ms, percentile
from velesio_core import Client as QueueClient
from velesio_core.client import Token


def client_latency(
    section: Section, direct_url: str, api_url: str, auth: dict[str, str], redis_url: str, samples: int
) -> None:
    direct, http = Client(direct_url), Client(api_url, auth)
    prompt, options = BODY["prompt"], {"max_tokens": BODY["n_predict"], "seed": BODY["seed"]}
    with QueueClient(redis_url) as queue:

        def whole() -> float:
            started = time.perf_counter()
            queue.complete(prompt, **options)
            return time.perf_counter() - started

        def first_token() -> float:
            started = time.perf_counter()
            with queue.complete(prompt, stream=True, **options) as stream:
                events = iter(stream)
                for event in events:
                    if isinstance(event, Token) and event.text:
                        elapsed = time.perf_counter() - started
                        for _rest in events:  # read to the end, as the HTTP sides do
                            pass
                        return elapsed
            raise RuntimeError("the stream carried no text")

        d, h, q = _three(
            lambda: direct.whole("/completion", BODY), lambda: http.whole("/completion", BODY), whole, samples
        )
        section.add("h. whole completion (8 tokens) via velesio_core.Client p50 / p99",
                    f"{ms(percentile(q, .5))} / {ms(percentile(q, .99))}")  # fmt: skip
        section.add("h. **Client's added latency over llama-server** p50 / p99", _added(q, d))
        section.add("h. Client's latency minus the HTTP path's (llama.cpp dialect) p50 / p99", _added(q, h))

        d, h, q = _three(
            lambda: direct.first_token("/completion", BODY),
            lambda: http.first_token("/completion", BODY),
            first_token,
            samples,
        )
        section.add("i. time to first token via velesio_core.Client, added over llama-server p50",
                    ms(percentile(q, .5) - percentile(d, .5)))  # fmt: skip
        section.add(
            "i. Client's time to first token minus the HTTP path's p50", ms(percentile(q, 0.5) - percentile(h, 0.5))
        )
    section.notes += [
        "Rows h and i: velesio_core.Client (sync) in the benchmark process puts the job on Redis itself, as the",
        "API does, and reads its events back with XREAD; a negative difference from the HTTP path is what the",
        "API's hop (HTTP parsing, gunicorn, Falcon) costs.",
    ]


def _added(side: list[float], base: list[float]) -> str:
    return (
        f"{ms(percentile(side, 0.5) - percentile(base, 0.5))} / {ms(percentile(side, 0.99) - percentile(base, 0.99))}"
    )


def _three(first, second, third, samples: int, *, warmup: int = 20) -> tuple[list[float], list[float], list[float]]:
    for _ in range(warmup):
        first(), second(), third()
    a, b, c = [], [], []
    for _ in range(samples):
        a.append(first())
        b.append(second())
        c.append(third())
    return a, b, c
