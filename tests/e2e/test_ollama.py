"""Ollama's API through velesio, with the official `ollama` SDK, on llama-server.

Cross-checks: with greedy sampling, Ollama's /api/chat must say what OpenAI's chat endpoint says
(both run the same chat job), and a raw /api/generate what llama.cpp's /completion says.
"""

from __future__ import annotations

import json

import ollama
import pytest
import requests

GREEDY = {"temperature": 0, "seed": 3}
MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]


@pytest.fixture
def client(stack):
    with ollama.Client(host=stack.base_url, headers=stack.auth) as sdk:
        yield sdk


def openai_chat(stack, **body) -> dict:
    return requests.post(stack.url("/v1/chat/completions"), json={"model": "tiny", **body}, headers=stack.auth).json()


def test_the_liveness_probe_and_version(stack):
    root = requests.get(stack.base_url + "/", timeout=10)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert requests.head(stack.base_url + "/", timeout=10).status_code == 200
    version = requests.get(stack.url("/api/version"), headers=stack.auth).json()["version"]
    assert [int(part) for part in version.split(".")] >= [0, 6, 0]


def test_models_list_show_and_ps(client):
    (listed,) = client.list().models
    assert listed.model == "tiny:latest" and listed.size > 0
    assert listed.details.format == "gguf" and listed.details.family == "llama"
    shown = client.show("tiny")
    assert "<|im_start|>" in shown.template and "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "llama"
    (running,) = client.ps().models
    assert running.model == "tiny:latest" and running.context_length == 4096


def test_chat_says_what_openai_chat_says(client, stack):
    answer = client.chat(model="tiny", messages=MESSAGES, options={"num_predict": 12, **GREEDY})
    expected = openai_chat(stack, messages=MESSAGES, max_tokens=12, **GREEDY)
    assert answer.message.role == "assistant"
    assert answer.message.content and answer.message.content == expected["choices"][0]["message"]["content"]
    assert answer.done and answer.done_reason == "length" and answer.eval_count == 12
    assert answer.prompt_eval_count == expected["usage"]["prompt_tokens"]
    assert answer.total_duration > answer.eval_duration > 0  # nanoseconds


def test_chat_streams_ndjson_that_adds_up(client, stack):
    whole = client.chat(model="tiny", messages=MESSAGES, options={"num_predict": 10, **GREEDY}).message.content
    chunks = list(client.chat(model="tiny", messages=MESSAGES, options={"num_predict": 10, **GREEDY}, stream=True))
    assert "".join(chunk.message.content for chunk in chunks) == whole
    assert [chunk.done for chunk in chunks].count(True) == 1 and chunks[-1].done
    assert chunks[-1].done_reason == "length" and chunks[-1].message.content == ""

    body = {"model": "tiny", "messages": MESSAGES, "options": {"num_predict": 3}}
    raw = requests.post(stack.url("/api/chat"), json=body, headers=stack.auth, timeout=30)  # streams by default
    assert raw.headers["content-type"].startswith("application/x-ndjson")
    lines = raw.text.splitlines()
    assert all(json.loads(line)["model"] == "tiny" for line in lines) and json.loads(lines[-1])["done"] is True


def test_raw_generate_is_llama_cpps_completion(client, stack):
    answer = client.generate(model="tiny", prompt="Once upon a time", raw=True, options={"num_predict": 9, **GREEDY})
    body = {"prompt": "Once upon a time", "n_predict": 9, **GREEDY}
    expected = requests.post(stack.llama_url + "/completion", json=body, timeout=30).json()
    assert answer.response == expected["content"] and answer.eval_count == 9
    streamed = client.generate(model="tiny", prompt="Once upon a time", raw=True, stream=True,
                               options={"num_predict": 9, **GREEDY})  # fmt: skip
    assert "".join(chunk.response for chunk in streamed) == expected["content"]


def test_templated_generate_is_a_one_message_chat(client):
    generated = client.generate(model="tiny", prompt="Greet the king", system="You are a knight.",
                                options={"num_predict": 8, **GREEDY})  # fmt: skip
    chatted = client.chat(model="tiny", messages=MESSAGES, options={"num_predict": 8, **GREEDY})
    assert generated.response == chatted.message.content


def test_an_empty_prompt_loads_and_keep_alive_zero_unloads(client):
    assert client.generate(model="tiny", prompt="").done_reason == "load"
    assert client.generate(model="tiny", prompt="", keep_alive=0).done_reason == "unload"
    assert client.chat(model="tiny", messages=[]).done_reason == "load"


def test_embed_and_the_legacy_embeddings(client):
    embedded = client.embed(model="tiny", input=["a castle", "a dragon"])
    assert len(embedded.embeddings) == 2 and all(len(vector) == 64 for vector in embedded.embeddings)
    assert embedded.prompt_eval_count > 0
    legacy = client.embeddings(model="tiny", prompt="a castle").embedding
    assert max(abs(a - b) for a, b in zip(legacy, embedded.embeddings[0], strict=True)) < 1e-5


def test_model_names_with_and_without_the_latest_tag(client):
    assert client.chat(model="tiny:latest", messages=MESSAGES, options={"num_predict": 2}).done


def test_an_unknown_model_is_a_404_in_ollamas_shape(client, stack):
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="llama3.2", messages=MESSAGES)
    assert raised.value.status_code == 404 and "llama3.2" in raised.value.error
    response = requests.post(stack.url("/api/generate"), json={"model": "nope", "prompt": "x"}, headers=stack.auth)
    assert response.status_code == 404 and set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": 5}]}, 400),
        ("/api/chat", {"model": "tiny", "messages": MESSAGES, "options": {"num_predict": "many"}}, 400),
        ("/api/chat", {"model": "tiny", "messages": MESSAGES, "options": {"top_p": 7}}, 400),
        ("/api/chat", {"messages": MESSAGES}, 400),
        ("/api/generate", {"model": "tiny", "prompt": "x", "images": ["aGk="]}, 400),
        ("/api/generate", {"model": "tiny", "prompt": "x", "suffix": "y"}, 501),
        ("/api/generate", {"model": "tiny", "prompt": "x", "format": "yaml"}, 400),
        ("/api/embed", {"model": "tiny", "input": 5}, 400),
        ("/api/embed", {"model": "tiny", "input": "x", "dimensions": 8}, 501),
        ("/api/show", {}, 400),
    ],
)
def test_bad_requests_get_ollamas_error_shape(stack, path, body, status):
    response = requests.post(stack.url(path), json=body, headers=stack.auth, timeout=30)
    assert response.status_code == status
    assert set(response.json()) == {"error"} and response.json()["error"]


def test_a_missing_token_is_a_401_in_ollamas_shape(stack):
    response = requests.post(stack.url("/api/chat"), json={"model": "tiny", "messages": MESSAGES}, timeout=10)
    assert response.status_code == 401 and set(response.json()) == {"error"}
