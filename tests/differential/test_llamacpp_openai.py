"""velesio against a bare llama-server on the same model: every llama.cpp and OpenAI route.

The reference is llama-server as a user runs it (``llama-server -m tiny.gguf --alias tiny``), plus
a second one with ``--embeddings`` for the embedding routes, as velesio's worker runs its two.
Each request goes to both; the answers must be the same (tests/support/differential.py says how
they are compared) or differ as docs/compatibility.md's table of known differences says.

The cases are the real clients' requests (docs/clients.md) and, through hypothesis, bodies drawn
from llama.cpp's documented parameters (tools/server/README.md), greedy and seeded so that both
servers must write the same text.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.differential import Answer, ask, differences, documented_differences, undocumented
from tests.support.processes import Process, free_port, http_ok, spawn, wait_until
from tests.support.routes import route_table
from velesio_core.backends.llamacpp.process import find_llama_server

DIALECTS = ("llamacpp", "openai")
MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]
GREEDY = {"temperature": 0, "seed": 7}
#: An image part, which llama-server forwards to a model's vision projector (the tiny model has none).
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
IMAGE_MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}]

#: One or more requests per route, as real clients send them: (method, path, body).
CASES: list[tuple[str, str, Any]] = [
    ("GET", "/", None),
    ("GET", "/health", None),
    ("POST", "/health", {"stream": False}),
    ("GET", "/v1/health", None),
    ("GET", "/props", None),
    ("POST", "/props", {"stream": False}),
    ("POST", "/template", {}),
    ("POST", "/completion", {"prompt": "Once upon a time", "n_predict": 8, **GREEDY}),
    ("POST", "/completion", {"prompt": "Once upon a time", "n_predict": 6, "stream": True, **GREEDY}),
    (
        "POST",
        "/completion",
        {"prompt": "hi", "n_predict": 3, "response_fields": ["content", "generation_settings/n_predict"], **GREEDY},
    ),
    ("POST", "/completion", {"prompt": [12, 34, 56], "n_predict": 4, **GREEDY}),
    ("POST", "/completion", {"prompt": ["Once", 34, " upon"], "n_predict": 3, **GREEDY}),
    ("POST", "/completion", {"prompt": ["The dragon", "The king", [12, 34]], "n_predict": 3, **GREEDY}),
    ("POST", "/completion", {"prompt": ["The king"], "n_predict": 3, **GREEDY}),
    ("POST", "/completion", {"prompt": {"prompt_string": "The king"}, "n_predict": 3, **GREEDY}),
    ("POST", "/completion", {"prompt": "hi", "n_predict": 2, "n_probs": 2, **GREEDY}),
    ("POST", "/completion", {"prompt": "hi", "n_predict": "two"}),
    ("POST", "/completions", {"prompt": "The dragon", "n_predict": 5, **GREEDY}),
    ("POST", "/tokenize", {"content": "Hello knight"}),
    ("POST", "/tokenize", {"content": "Hello knight", "with_pieces": True, "stream": False}),
    ("POST", "/detokenize", {"tokens": [72, 101, 108]}),
    ("POST", "/detokenize", {"tokens": [999999]}),
    ("POST", "/apply-template", {"messages": MESSAGES, "stream": False}),
    ("POST", "/embeddings", {"content": "a sword", "stream": False}),
    ("POST", "/embedding", {"content": "a sword", "stream": False}),
    ("GET", "/slots", None),
    ("POST", "/infill", {"input_prefix": "def f(", "input_suffix": "):", "n_predict": 4}),
    ("POST", "/rerank", {"query": "sword", "documents": ["a blade", "a cat"]}),
    ("POST", "/reranking", {"query": "sword", "documents": ["a blade"]}),
    ("POST", "/v1/rerank", {"query": "sword", "documents": ["a blade"]}),
    ("POST", "/v1/reranking", {"query": "sword", "documents": ["a blade"]}),
    ("POST", "/chat/completions/input_tokens", {"messages": MESSAGES}),
    ("POST", "/v1/chat/completions/input_tokens", {"messages": MESSAGES}),
    ("GET", "/v1/models", None),
    ("GET", "/models", None),
    ("GET", "/v1/models/tiny", None),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, **GREEDY}),
    ("POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 8, **GREEDY}),
    ("POST", "/v1/chat/completions", {"model": "gpt-3.5-turbo", "messages": MESSAGES, "max_tokens": 4, **GREEDY}),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "tiny", "messages": MESSAGES, "max_tokens": 6, "stream": True, **GREEDY},
    ),
    ("POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "n": 2, **GREEDY}),
    ("POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "n": 2, "stream": True, **GREEDY}),
    (
        "POST",
        "/v1/chat/completions",
        {"messages": MESSAGES, "max_tokens": 3, "logprobs": True, "top_logprobs": 2, **GREEDY},
    ),
    ("POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "tools": [{}]}),
    ("POST", "/v1/chat/completions", {"messages": IMAGE_MESSAGES, "max_tokens": 2}),
    ("POST", "/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, **GREEDY}),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "The dragon", "max_tokens": 6, **GREEDY}),
    ("POST", "/v1/completions", {"prompt": ["The dragon", "The king"], "max_tokens": 3, **GREEDY}),
    ("POST", "/v1/completions", {"prompt": ["The dragon", "The king"], "max_tokens": 3, "stream": True, **GREEDY}),
    ("POST", "/v1/completions", {"prompt": "The dragon", "max_tokens": 3, "n": 2, "stream": True, **GREEDY}),
    ("POST", "/v1/completions", {"prompt": "The dragon", "max_tokens": 3, "logprobs": 2, **GREEDY}),
    ("POST", "/v1/completions", {"prompt": "The dragon", "max_tokens": 3, "logprobs": 2, "stream": True, **GREEDY}),
    ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "a sword"}),
    ("POST", "/v1/embeddings", {"input": ["a sword", "a shield"]}),
    ("POST", "/v1/embeddings", {"input": [[12, 34, 56], [7, 8]]}),
    ("POST", "/v1/embeddings", {"input": "knight " * 3000}),
]


@pytest.fixture(scope="module")
def reference(tiny_model, logs_dir) -> Iterator[dict[str, str]]:
    """Two bare llama-servers: one as a user starts it, one with --embeddings (velesio runs both)."""
    binary = find_llama_server(None)
    common = ["--model", str(tiny_model), "--alias", "tiny", "--host", "127.0.0.1", "--threads", "1", "--no-webui"]
    generate, embed = free_port(), free_port()
    processes: list[Process] = []
    env = {"PATH": "/usr/bin:/bin"}
    try:
        processes.append(spawn("reference-llama", [binary, *common, "--port", str(generate), "--parallel", "8",
                                                   "--ctx-size", "32768"], env=env, logs=logs_dir))  # fmt: skip
        processes.append(spawn("reference-embeddings", [binary, *common, "--port", str(embed), "--embeddings",
                                                        "--pooling", "mean", "--parallel", "2",
                                                        "--ctx-size", "8192"], env=env, logs=logs_dir))  # fmt: skip
        for port in (generate, embed):
            wait_until(lambda port=port: http_ok(f"http://127.0.0.1:{port}/health"), timeout=120, what="llama-server")
        yield {"generate": f"http://127.0.0.1:{generate}", "embed": f"http://127.0.0.1:{embed}"}
    finally:
        for process in processes:
            process.stop()


def _reference_url(reference: dict[str, str], path: str) -> str:
    return reference["embed"] if "embedding" in path else reference["generate"]


def compare(reference: dict[str, str], stack, method: str, path: str, body: Any) -> tuple[Answer, Answer, list[str]]:
    expected = ask(_reference_url(reference, path), method, path, body)
    got = ask(stack.base_url, method, path, body, headers=stack.auth)
    return expected, got, differences(expected, got)


#: Routes of these dialects that are not llama-server's to compare with: velesio's admin API and
#: console, OpenAI's Images (README's "velesio only" rows), and the Responses API, which velesio
#: translates to chat jobs itself (tests/e2e/test_responses.py).
NOT_LLAMA_SERVERS = ("/admin/", "/ui", "/v1/images/", "/v1/responses")


def test_every_llamacpp_and_openai_route_has_a_case():
    served = {
        route.path
        for route in route_table()
        if route.dialect in DIALECTS and not route.path.startswith(NOT_LLAMA_SERVERS)
    }
    cased = {path for _, path, _ in CASES} | {"/v1/models/{model}"}
    assert served - cased == set()


def test_every_known_difference_has_a_reason():
    known = documented_differences()
    assert known and all(len(entry.reason) > 10 for entry in known)


@pytest.mark.parametrize(("method", "path", "body"), CASES, ids=[f"{m} {p} {i}" for i, (m, p, _) in enumerate(CASES)])
def test_velesio_answers_as_llama_server_does(reference, stack, method, path, body):
    expected, got, found = compare(reference, stack, method, path, body)
    # Never a 500 for what the client sent, wherever llama-server is.
    assert got.status != 500, got.body
    unexplained = undocumented(f"{method} {path}", found, documented_differences())
    assert unexplained == [], f"UNEXPLAINED {method} {path}: {unexplained}\nllama-server: {str(expected.body)[:400]}"


def test_json_nested_deeper_than_the_queue_carries_is_a_400_never_a_500(reference, stack):
    deep: Any = []
    for _ in range(299):
        deep = [deep]
    body = {"messages": MESSAGES, "max_tokens": 2, "unknown_field": deep}
    expected, got, _ = compare(reference, stack, "POST", "/v1/chat/completions", body)
    # llama-server takes any depth; velesio's jobs travel as JSON its writer limits (docs/compatibility.md).
    assert expected.status == 200
    assert got.status == 400 and "nested deeper than" in got.body["error"]["message"]


# Bodies drawn from llama.cpp's documented /completion parameters (tools/server/README.md).
words = st.sampled_from(["the", "knight", "king", "dragon", "sword", " ", "Once", "upon", "a", "time", "!"])
prompts = st.lists(words, min_size=1, max_size=8).map("".join)
completion_options = st.fixed_dictionaries(
    {"prompt": prompts, "n_predict": st.integers(0, 6)},
    optional={
        "top_k": st.integers(1, 50),
        "top_p": st.floats(0.1, 1.0),
        "min_p": st.floats(0.0, 0.5),
        "repeat_penalty": st.floats(1.0, 1.5),
        "repeat_last_n": st.integers(0, 64),
        "presence_penalty": st.floats(0.0, 1.0),
        "frequency_penalty": st.floats(0.0, 1.0),
        "stop": st.lists(words, max_size=2),
        "n_probs": st.integers(0, 3),
        "ignore_eos": st.booleans(),
        "cache_prompt": st.booleans(),
        "return_tokens": st.booleans(),
        "stream": st.booleans(),
        "response_fields": st.lists(st.sampled_from(["content", "tokens_predicted", "stop_type", "model"]), max_size=3),
    },
).map(lambda body: {**body, **GREEDY})
chat_options = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.builds(lambda role, text: {"role": role, "content": text}, st.sampled_from(["user", "system"]), prompts),
            min_size=1,
            max_size=3,
        )
    },
    optional={
        "model": st.sampled_from(["tiny", "gpt-4o", "gpt-3.5-turbo"]),
        "max_tokens": st.integers(1, 6),
        "top_p": st.floats(0.1, 1.0),
        "presence_penalty": st.floats(-2.0, 2.0),
        "stop": st.one_of(words, st.lists(words, max_size=2)),
        "stream": st.booleans(),
    },
).map(lambda body: {**body, **GREEDY})
tokenize_options = st.fixed_dictionaries(
    {"content": prompts}, optional={"add_special": st.booleans(), "with_pieces": st.booleans()}
)

PROPERTY_SETTINGS = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(body=completion_options)
def test_any_documented_completion_body(reference, stack, body):
    _, got, found = compare(reference, stack, "POST", "/completion", body)
    assert got.status != 500
    assert undocumented("POST /completion", beyond_generated_text(found), documented_differences()) == []


#: What the model generated, and what follows from it. The generated bodies below compare these by
#: type, not value: llama.cpp's greedy decoding is not bitwise the same on two servers whose slots
#: have cached and batched different prompts, and the tiny model's near-tied logits then pick
#: another token (seen: ' night' against 'the', cut by a stop word). The fixed CASES above, sent
#: to fresh slots, compare values.
GENERATED = (
    "$.content: *",
    "$.choices[].message.content: *",
    "$.choices[].text: *",
    "$.choices[].finish_reason: *",
    "$.usage.completion_tokens: *",
    "$.usage.total_tokens: *",
    "$.tokens_predicted: *",
    "$.stop_type: *",
    "$.stopping_word: *",
    "$.stopped_*: *",
    "$.timings.predicted_*: *",
    "$.timings.prompt_*: *",
    "stream text *",
    "$stream.last.*: *",
)


def beyond_generated_text(found: list[str]) -> list[str]:
    """The differences but the generated values (a type or a missing key still counts)."""
    return [
        line
        for line in found
        if not any(fnmatch.fnmatchcase(line, pattern) for pattern in GENERATED)
        or line.endswith((": missing", ": extra"))
        or re.search(r": (boolean|number|string|array|object|null) != (boolean|number|string|array|object|null)$", line)
    ]


@PROPERTY_SETTINGS
@given(body=chat_options)
def test_any_chat_body(reference, stack, body):
    _, got, found = compare(reference, stack, "POST", "/v1/chat/completions", body)
    assert got.status != 500
    assert undocumented("POST /v1/chat/completions", beyond_generated_text(found), documented_differences()) == []


@PROPERTY_SETTINGS
@given(body=tokenize_options)
def test_any_tokenize_body(reference, stack, body):
    _, _, found = compare(reference, stack, "POST", "/tokenize", body)
    assert undocumented("POST /tokenize", found, documented_differences()) == []
