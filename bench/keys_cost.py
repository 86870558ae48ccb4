"""What stored API keys cost: a whole /completion with an API_TOKENS token (no limits to check)
against the same request with a stored key whose every limit is set (the admission script, a
concurrency lease, its release with the tokens charged, the rate-limit headers), and with a key
minted by it (the same, for two keys at once). One stack, one llama-server, requests alternated,
so the difference is the key's own cost."""

from __future__ import annotations

import requests

from bench.llm import BODY, Client
from bench.report import Section, ms, percentile

#: High enough never to refuse during the benchmark, so every limit is checked and none bites.
LIMITS = {"rpm": 10_000_000, "tpm": 10**12, "parallel": 1000, "tokens_per_day": 10**15, "images_per_day": 10**6}


def keys_cost(section: Section, stack, samples: int) -> None:
    """``stack`` runs with KEY_SECRET set (tests.support.processes.Stack)."""
    spec = {"name": "bench", "scopes": ["llm", "mint"], "limits": LIMITS}
    parent = requests.post(stack.url("/admin/keys"), json=spec, headers=stack.auth, timeout=10).json()
    child_spec = {"name": "bench-player", "scopes": ["llm"], "limits": LIMITS}
    child = requests.post(stack.url("/admin/keys"), json=child_spec, timeout=10,
                          headers={"Authorization": f"Bearer {parent['key']}"}).json()  # fmt: skip
    sides = {
        "API_TOKENS": Client(stack.base_url, stack.auth),
        "key": Client(stack.base_url, {"Authorization": f"Bearer {parent['key']}"}),
        "minted key": Client(stack.base_url, {"Authorization": f"Bearer {child['key']}"}),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(30 + samples):
        for name, client in sides.items():
            elapsed = client.whole("/completion", BODY)
            if round_ >= 30:  # the first rounds warm everything up
                times[name].append(elapsed)

    def added(side: str, fraction: float) -> float:
        return percentile(times[side], fraction) - percentile(times["API_TOKENS"], fraction)

    section.add("whole /completion with an API_TOKENS token p50", ms(percentile(times["API_TOKENS"], 0.5)))
    cost = added("key", 0.5)
    section.add("**added by a key with every limit** p50", ms(cost), "≤ 0.2 ms", cost <= 0.0002)
    section.add("added by a key with every limit p99", ms(added("key", 0.99)))
    section.add("added by a minted key (its limits and its parent's) p50", ms(added("minted key", 0.5)))
