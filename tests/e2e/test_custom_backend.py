"""A custom backend served by a worker like the built-in ones: the example package
(examples/markov_backend), installed for real and found through its ``velesio.backends`` entry
point (RUN_BACKEND=markov), answers through the llama.cpp and OpenAI dialects and the Python
client; a second worker's completion-only backend shows the 501 of the jobs it lacks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import requests

from tests.support.llmunity import post_chunks
from tests.support.processes import ROOT, RedisServer, Stack, start_stack, start_worker, wait_until
from velesio_core import Client
from velesio_core.client import NotSupported, Token

EXAMPLE = ROOT / "examples" / "markov_backend"
TALE = " ".join((EXAMPLE / "src" / "velesio_markov" / "tale.txt").read_text().split())
ORDER = 4


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The example installed as a user would (pip), into a folder the workers get on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(EXAMPLE)],
        check=True, timeout=300,
    )  # fmt: skip
    assert (target / "velesio_markov" / "tale.txt").exists()
    return target


@pytest.fixture(scope="module")
def markov(redis_server: RedisServer, installed_example: Path, logs_dir: Path) -> Iterator[Stack]:
    path = os.pathsep.join([str(installed_example), os.environ.get("PYTHONPATH", ""), str(ROOT)])
    stack = start_stack(redis_server.url(4), None, logs_dir, name="markov", RUN_BACKEND="markov", PYTHONPATH=path)
    counter = start_worker(
        stack.env | {"RUN_BACKEND": "tests.support.plugin_backends:Counter", "METRICS": "false"}, logs_dir, "counter"
    )
    stack.processes.insert(0, counter)
    try:
        wait_until(
            lambda: {"markov-tale", "counter"} <= set(_model_ids(stack)), timeout=120, what="both workers serving"
        )
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


def _model_ids(stack: Stack) -> list[str]:
    try:
        return [model["id"] for model in requests.get(stack.url("/v1/models"), timeout=5).json()["data"]]
    except requests.RequestException:
        return []


def follows_the_tale(prompt: str, text: str) -> bool:
    """Whether every character of ``text`` followed the same ``ORDER`` characters somewhere in the tale."""
    whole = " ".join(prompt.split())[-ORDER:] + text
    return all(whole[index : index + ORDER + 1] in TALE for index in range(len(whole) - ORDER))


def test_the_models_of_both_backends_are_listed(markov):
    assert {"markov-tale", "counter"} <= set(_model_ids(markov))


def test_llamacpp_completion_is_computed_by_the_chain(markov):
    body = {"prompt": "the smith", "n_predict": 60, "seed": 7, "model": "markov-tale"}
    answer = requests.post(markov.url("/completion"), json=body, headers=markov.auth, timeout=30).json()
    assert len(answer["content"]) == 60
    assert answer["tokens_predicted"] == 60
    assert answer["stop_type"] == "limit"
    assert follows_the_tale("the smith", answer["content"])
    # The same seed, the same text: streamed, its chunks make the whole answer.
    status, _, chunks = post_chunks(markov.url("/completion"), orjson.dumps(body | {"stream": True}), markov.auth)
    assert status == 200
    pieces = [orjson.loads(chunk.removeprefix(b"data: ")) for chunk in chunks]
    assert "".join(piece["content"] for piece in pieces) == answer["content"]
    assert pieces[-1]["stop"] is True


def test_llamacpp_tokenize_round_trips(markov):
    tokens = requests.post(
        markov.url("/tokenize"),
        json={"content": "the lantern", "model": "markov-tale"},
        headers=markov.auth,
        timeout=30,
    ).json()["tokens"]
    assert len(tokens) == len("the lantern")
    text = requests.post(
        markov.url("/detokenize"), json={"tokens": tokens, "model": "markov-tale"}, headers=markov.auth, timeout=30
    ).json()["content"]
    assert text == "the lantern"


def test_openai_chat_streams_and_stops_at_a_stop_word(markov):
    with openai.OpenAI(base_url=markov.url("/v1"), api_key=markov.token, max_retries=0) as sdk:
        messages = [{"role": "user", "content": "Tell me of the lantern"}]
        whole = sdk.chat.completions.create(model="markov-tale", messages=messages, max_tokens=200, seed=3)
        text = whole.choices[0].message.content
        assert whole.usage.completion_tokens <= 200
        assert follows_the_tale("", text)  # the rendered chat ends "assistant:", which the tale never has
        stream = sdk.chat.completions.create(
            model="markov-tale", messages=messages, max_tokens=200, seed=3, stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == text
        stopped = sdk.chat.completions.create(
            model="markov-tale", messages=messages, max_tokens=200, seed=3, stop=["e"]
        )
        assert stopped.choices[0].message.content == text[: text.index("e")]
        assert stopped.choices[0].finish_reason == "stop"


def test_openai_embeddings_are_unit_vectors_that_tell_texts_apart(markov):
    with openai.OpenAI(base_url=markov.url("/v1"), api_key=markov.token, max_retries=0) as sdk:
        answer = sdk.embeddings.create(model="markov-tale", input=["lantern", "lanterns", "dragon"])
    vectors = [item.embedding for item in answer.data]
    # The SDK asks for base64, float32 on the wire: unit length to float32's precision.
    assert all(math.isclose(sum(value * value for value in vector), 1.0, rel_tol=1e-5) for vector in vectors)
    near = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
    far = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
    assert near > far


def test_jobs_outside_a_backends_capabilities_are_501_in_each_dialect(markov):
    with openai.OpenAI(base_url=markov.url("/v1"), api_key=markov.token, max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError) as refused:
            sdk.embeddings.create(model="counter", input="one")
        assert refused.value.status_code == 501
        assert "does not support embeddings" in refused.value.message
        counted = sdk.completions.create(model="counter", prompt="count: 7", max_tokens=3)
        assert counted.choices[0].text == " 8 9 10"
    answer = requests.post(
        markov.url("/embeddings"), json={"content": "one", "model": "counter"}, headers=markov.auth, timeout=30
    )
    assert answer.status_code == 501
    assert answer.json()["error"]["type"] == "not_supported_error"
    # llama-server's own endpoints, which velesio relays to it alone.
    infill = requests.post(
        markov.url("/infill"), json={"input_prefix": "the", "model": "markov-tale"}, headers=markov.auth, timeout=30
    )
    assert infill.status_code == 501
    assert "does not support /infill" in infill.json()["error"]["message"]


def test_the_python_client_runs_the_custom_backend(markov):
    with Client(markov.env["REDIS_URL"]) as client:
        answer = client.complete("the dragon", model="markov-tale", max_tokens=40, seed=5)
        assert len(answer.text) == 40
        assert follows_the_tale("the dragon", answer.text)
        events = list(client.chat([{"role": "user", "content": "hi"}], model="markov-tale", max_tokens=25, stream=True))
        assert sum(len(event.text) for event in events if isinstance(event, Token)) == 25
        assert len(client.embed(["a", "b"], model="markov-tale").vectors) == 2
        with pytest.raises(NotSupported):
            client.tokenize("one", model="counter")
