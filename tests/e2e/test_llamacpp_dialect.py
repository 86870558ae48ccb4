"""llama.cpp's native API through velesio (API, Redis, worker, llama-server), endpoint by endpoint.

Where llama-server can answer the same request itself, the test asks it directly (the worker's
llama-server also listens on LLAMA_PORT) and compares: velesio must answer what llama-server
answers, not just something of the right shape.
"""

from __future__ import annotations

import json

import orjson
import pytest
import requests

from tests.support.llmunity import post_chunks, v2_parse_cumulative, v3_concatenate

# Deterministic: greedy sampling and a fixed seed, so velesio and llama-server must agree.
GREEDY = {"temperature": 0, "seed": 7, "ignore_eos": True}


def completion(stack, body: dict, **kwargs) -> requests.Response:
    return requests.post(stack.url("/completion"), json=body, headers=stack.auth, timeout=60, **kwargs)


def direct(stack, path: str, body: dict | None = None) -> requests.Response:
    if body is None:
        return requests.get(stack.llama_url + path, timeout=60)
    return requests.post(stack.llama_url + path, json=body, timeout=60)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/health", "/v1/health"])
def test_health_is_public_and_answers_get_and_post(stack, method, path):
    response = requests.request(method, stack.url(path), timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_props_are_llama_servers_own(stack, method):
    # LlamaLib v2 POSTs {"stream": false} and reads default_generation_settings.n_ctx.
    response = requests.request(method, stack.url("/props"), json={"stream": False}, headers=stack.auth, timeout=10)
    assert response.status_code == 200
    props = response.json()
    llama_props = direct(stack, "/props").json()
    assert props["default_generation_settings"]["n_ctx"] == llama_props["default_generation_settings"]["n_ctx"]
    assert props["default_generation_settings"]["n_ctx"] == 4096  # LLAMA_CTX: per slot
    assert props["total_slots"] == 8  # LLAMA_SLOTS
    assert props["chat_template"] == llama_props["chat_template"]


def test_template_is_an_llm_for_unity_name(stack):
    # LLM for Unity v2 looks the answer up in its own dictionary: a Jinja string would throw.
    response = requests.post(stack.url("/template"), data="{}", headers=stack.auth, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"template": "chatml"}


def test_whole_completion_is_what_llama_server_answers(stack):
    body = {"prompt": "The hero walks into the castle", "n_predict": 12, **GREEDY}
    ours = completion(stack, body)
    theirs = direct(stack, "/completion", body)
    assert ours.status_code == 200
    assert ours.headers["content-type"].startswith("application/json")
    answer, expected = ours.json(), theirs.json()
    assert answer["content"] and answer["content"] == expected["content"]
    assert answer["stop"] is True
    assert answer["tokens_predicted"] == 12
    assert answer["stop_type"] == "limit"
    assert answer["timings"]["predicted_n"] == 12
    assert answer["generation_settings"]["n_predict"] == 12


def test_stream_framing_is_what_llm_for_unity_parses(stack):
    body = {"prompt": "Tell me about the dragon", "n_predict": 16, "stream": True, **GREEDY}
    whole = completion(stack, {**body, "stream": False}).json()["content"]

    status, headers, chunks = post_chunks(stack.url("/completion"), orjson.dumps(body), stack.auth)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    chunks = list(chunks)

    # One event per HTTP chunk, each exactly "data: <json>\n\n": no comments, pings or [DONE].
    events = []
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n"), chunk
        assert chunk.count(b"data: ") == 1
        events.append(json.loads(chunk[len(b"data: ") : -2]))
    assert b"[DONE]" not in b"".join(chunks)

    partial, final = events[:-1], events[-1]
    assert len(partial) == 16
    assert all(event["stop"] is False and event["tokens"] for event in partial)
    assert all(isinstance(token, int) for event in partial for token in event["tokens"])
    assert final["stop"] is True and final["content"] == "" and final["tokens"] == []
    assert final["timings"]["predicted_n"] == 16 and "stop_type" in final and "truncated" in final
    assert "".join(event["content"] for event in partial) == whole

    # LLM for Unity v2 re-parses the cumulative body after every chunk: each must parse.
    cumulative = b""
    for chunk in chunks:
        cumulative += chunk
        v2_parse_cumulative(cumulative.decode())
    assert v2_parse_cumulative(cumulative.decode()) == whole.strip()

    # LlamaLib (v3) parses each chunk alone.
    content, tokens, last = v3_concatenate(chunks)
    assert content == whole
    assert len(tokens) == 16 and last["stop"] is True


def test_llm_for_unity_v2_request_is_accepted_as_sent(stack):
    # Every field LLMCharacter v2 serialises (JsonUtility writes them all), with its defaults.
    body = {
        "prompt": "<|im_start|>system\nYou are a knight.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n",
        "id_slot": -1, "temperature": 0.2, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "n_predict": 8,
        "n_keep": 9, "stream": True, "stop": ["<|im_start|>", "\n<|im_start|>", "<|im_end|>", "\n<|im_end|>"],
        "tfs_z": 0.0, "typical_p": 1.0, "repeat_penalty": 1.1, "repeat_last_n": 64, "penalize_nl": True,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "penalty_prompt": "", "mirostat": 0,
        "mirostat_tau": 5.0, "mirostat_eta": 0.1, "seed": 0, "ignore_eos": False, "n_probs": 0,
        "cache_prompt": True, "messages": [],
    }  # fmt: skip
    response = completion(stack, body)
    assert response.status_code == 200
    assert response.text.startswith("data: ")
    v2_parse_cumulative(response.text)


def test_llm_for_unity_v3_request_with_json_schema_object(stack):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    body = {"prompt": "Answer: ", "n_predict": 24, "temperature": 0.2, "seed": 0, "json_schema": schema}
    response = completion(stack, body)
    assert response.status_code == 200
    # The random model can spend its tokens on the whitespace JSON allows; what matters is that
    # the schema, sent as an object, constrained it: unconstrained, it writes words.
    content = response.json()["content"]
    assert content.lstrip().startswith("{")
    assert set(content) <= set(' \n\t{}"okturefals:,'), content


def test_tokenize_and_detokenize_round_trip(stack):
    text = "hello world, the dragon!"
    tokens = requests.post(stack.url("/tokenize"), json={"content": text, "stream": False}, headers=stack.auth).json()
    assert tokens == direct(stack, "/tokenize", {"content": text}).json()
    assert all(isinstance(token, int) for token in tokens["tokens"])
    back = requests.post(stack.url("/detokenize"), json={"tokens": tokens["tokens"]}, headers=stack.auth).json()
    assert back["content"].strip() == text


def test_apply_template_renders_the_models_chat_template(stack):
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    response = requests.post(stack.url("/apply-template"), json={**body, "stream": False}, headers=stack.auth)
    assert response.status_code == 200
    assert response.json() == direct(stack, "/apply-template", body).json()
    assert response.json()["prompt"].endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("path", ["/embeddings", "/embedding"])
def test_embeddings_shape_follows_the_client_generation(stack, path):
    v2 = requests.post(stack.url(path), json={"content": "a castle"}, headers=stack.auth, timeout=30)
    v3 = requests.post(stack.url(path), json={"content": "a castle", "stream": False}, headers=stack.auth, timeout=30)
    assert v2.status_code == v3.status_code == 200
    # v2's JsonUtility needs a top-level object; v3 (LlamaLib) reads result[0].embedding.
    vector = v2.json()["embedding"]
    assert len(vector) == 64 and all(isinstance(x, float) for x in vector)
    array = v3.json()
    assert isinstance(array, list) and array[0]["index"] == 0
    assert array[0]["embedding"][0] == vector


def test_slots_lists_the_workers_slots(stack):
    response = requests.get(stack.url("/slots"), headers=stack.auth, timeout=10)
    assert response.status_code == 200
    assert [slot["id"] for slot in response.json()] == list(range(8))
