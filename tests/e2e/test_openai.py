"""OpenAI's API through velesio, with the official `openai` SDK (sync, async, streaming).

Where llama-server's own OpenAI endpoint can answer the same request, the test compares: with
greedy sampling, velesio's answer must be llama-server's.
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct

import openai
import pytest
import requests

GREEDY = {"temperature": 0, "seed": 3}
MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=stack.url("/v1"), api_key=stack.token, max_retries=0) as sdk:
        yield sdk


def direct_chat(stack, **body) -> dict:
    return requests.post(stack.llama_url + "/v1/chat/completions", json=body, timeout=30).json()


def test_models_lists_what_the_workers_serve(client, stack):
    assert [model.id for model in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    # Public, as llama.cpp has it.
    assert requests.get(stack.url("/v1/models"), timeout=10).status_code == 200


def test_chat_is_llama_servers_answer(client, stack):
    answer = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, **GREEDY)
    expected = direct_chat(stack, messages=MESSAGES, max_tokens=12, **GREEDY)
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content == expected["choices"][0]["message"]["content"]
    assert choice.finish_reason == "length"
    assert answer.usage.completion_tokens == 12
    assert answer.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert answer.model == "tiny" and answer.object == "chat.completion"


def test_chat_stream_deltas_add_up_to_the_whole_answer(client):
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, **GREEDY)
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=10, stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in with_choices) == whole.choices[0].message.content
    assert with_choices[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert {chunk.id for chunk in chunks} == {chunks[0].id}


def test_chat_stream_ends_with_done_and_has_no_usage_unless_asked(stack):
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 4, "stream": True}
    response = requests.post(stack.url("/v1/chat/completions"), json=body, headers=stack.auth, timeout=30)
    events = [block for block in response.text.split("\n\n") if block]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "data: [DONE]"
    assert all(event.startswith("data: ") for event in events)
    assert '"usage"' not in response.text


def test_the_async_client_streams_and_waits(stack):
    async def go() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=stack.url("/v1"), api_key=stack.token, max_retries=0) as sdk:
            whole = await sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, **GREEDY)
            stream = await sdk.chat.completions.create(
                model="tiny", messages=MESSAGES, max_tokens=8, stream=True, **GREEDY
            )
            pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
            return whole.choices[0].message.content, "".join(pieces)

    whole, streamed = asyncio.run(go())
    assert whole and whole == streamed


def test_json_mode_travels_to_llama_server_and_its_answer_comes_back(client, stack):
    body = {"messages": MESSAGES, "max_tokens": 16, "response_format": {"type": "json_object"}, **GREEDY}
    ours = client.chat.completions.create(model="tiny", **body)
    theirs = direct_chat(stack, **body)
    # Constrained to JSON by llama-server's grammar: an object, opened at once.
    assert ours.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    assert ours.choices[0].message.content.lstrip().startswith("{")


def test_legacy_completions_are_llama_servers_raw_completion(client, stack):
    answer = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=9, **GREEDY)
    body = {"prompt": "Once upon a time", "n_predict": 9, **GREEDY}
    expected = requests.post(stack.llama_url + "/completion", json=body, timeout=30).json()
    assert answer.choices[0].text == expected["content"]
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 9
    streamed = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=9, stream=True, **GREEDY)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == expected["content"]


def test_embeddings_one_unit_vector_per_input(client):
    answer = client.embeddings.create(model="tiny", input=["a castle", "a dragon", "a castle"])
    vectors = [item.embedding for item in answer.data]
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert all(len(vector) == 64 for vector in vectors)
    assert all(math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-3) for vector in vectors)
    # Batched arithmetic: the same text gives the same vector to float precision, another text not.
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(vectors[0], vectors[2], strict=True))
    assert max(abs(a - b) for a, b in zip(vectors[0], vectors[1], strict=True)) > 1e-2
    assert answer.usage.prompt_tokens > 0


def test_base64_embeddings_decode_to_the_same_vector(stack, client):
    floats = client.embeddings.create(model="tiny", input="a castle").data[0].embedding
    body = {"model": "tiny", "input": "a castle", "encoding_format": "base64"}
    encoded = requests.post(stack.url("/v1/embeddings"), json=body, headers=stack.auth).json()["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, floats, strict=True))


@pytest.mark.parametrize("base_path", ["/v1", ""])
def test_the_sdk_works_with_and_without_v1_in_its_base_url(stack, base_path):
    # llama-server serves its OpenAI routes without /v1 too, and so SDKs configured either way work.
    with openai.OpenAI(base_url=stack.url(base_path), api_key=stack.token, max_retries=0) as sdk:
        assert [model.id for model in sdk.models.list()] == ["tiny"]
        answer = sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, **GREEDY)
        assert answer.choices[0].message.content
        streamed = sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, stream=True, **GREEDY)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == (
            answer.choices[0].message.content
        )


@pytest.mark.parametrize("name", ["gpt-4o", "gpt-3.5-turbo", "tiny"])
def test_with_one_model_served_any_name_is_that_model(client, name):
    # As llama-server serves its one model under whatever name a client sends.
    answer = client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=3, **GREEDY)
    assert answer.model == "tiny" and answer.choices[0].message.content
    assert client.embeddings.create(model="text-embedding-3-small", input="a sword").data[0].embedding


def test_no_model_is_the_default_one(stack):
    response = requests.post(
        stack.url("/v1/chat/completions"), json={"messages": MESSAGES, "max_tokens": 2}, headers=stack.auth, timeout=30
    )
    assert response.status_code == 200 and response.json()["model"] == "tiny"


def test_n_choices_and_logprobs_are_llama_servers(client, stack):
    answer = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=3, n=2, logprobs=True, top_logprobs=2, **GREEDY
    )
    expected = direct_chat(stack, messages=MESSAGES, max_tokens=3, logprobs=True, top_logprobs=2, **GREEDY)
    assert [choice.index for choice in answer.choices] == [0, 1]
    tokens = [entry["token"] for entry in expected["choices"][0]["logprobs"]["content"]]
    for choice in answer.choices:
        assert [entry.token for entry in choice.logprobs.content] == tokens
        assert all(len(entry.top_logprobs) == 2 for entry in choice.logprobs.content)
    assert answer.usage.completion_tokens == 6


def test_several_prompts_are_several_choices(client):
    answer = client.completions.create(model="tiny", prompt=["The dragon", "The king"], max_tokens=3, **GREEDY)
    alone = client.completions.create(model="tiny", prompt="The king", max_tokens=3, **GREEDY)
    assert [choice.index for choice in answer.choices] == [0, 1]
    assert answer.choices[1].text == alone.choices[0].text


def test_a_wrong_key_is_a_401_the_sdk_understands(stack):
    with (
        openai.OpenAI(base_url=stack.url("/v1"), api_key="wrong", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        sdk.chat.completions.create(model="tiny", messages=MESSAGES)
    assert raised.value.body["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "tiny", "messages": MESSAGES, "max_tokens": "8"}, 400, "max_tokens"),
        ({"model": "tiny", "messages": MESSAGES, "temperature": 3}, 400, "temperature"),
        ({"model": "tiny", "messages": []}, 400, "messages"),
        ({"model": "tiny", "messages": [{"content": "no role"}]}, 400, "messages"),
        ({"model": "", "messages": MESSAGES}, 400, "model"),
        ({"model": "tiny", "messages": MESSAGES, "top_logprobs": 2}, 400, None),
    ],
)
def test_bad_chat_requests_get_openais_error_shape(stack, body, status, field):
    response = requests.post(stack.url("/v1/chat/completions"), json=body, headers=stack.auth, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if field:
        assert error["message"].startswith(field)


def test_malformed_json_and_unknown_routes_use_openais_shape(stack):
    malformed = requests.post(stack.url("/v1/chat/completions"), data=b"{", headers=stack.auth)
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    missing = requests.get(stack.url("/v1/nothing-here"), headers=stack.auth)
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}
