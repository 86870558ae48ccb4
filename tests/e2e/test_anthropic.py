"""Anthropic's Messages API through velesio, with the official `anthropic` SDK.

Forced tool use works on the embedded tiny model: its chat template is one llama.cpp parses tool
calls from, and a forced call constrains sampling to one (tiny_model.py). Field names and error
types are checked against Anthropic's API reference (docs.claude.com/en/api/messages,
/en/api/messages-streaming, /en/api/errors).
"""

from __future__ import annotations

import anthropic
import pytest
import requests

from tests.support.processes import wait_until
from tests.support.registry import unserved_model
from velesio_core.jobs import Queue
from velesio_core.queue.keys import QueueKeys

# Sampling options are no longer in the SDK's signature (Anthropic's newest models take none);
# the API still takes them, and older clients send them.
GREEDY = {"extra_body": {"temperature": 0.0, "top_k": 1}}
# The tiny model spells a call out character by character, with random JSON whitespace.
CALL_TOKENS = 400
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
        "required": ["city"],
    },
}


@pytest.fixture
def client(stack):
    with anthropic.Anthropic(base_url=stack.url(""), api_key=stack.token, max_retries=0) as sdk:
        yield sdk


def test_create_answers_a_message_with_usage(client, stack):
    message = client.messages.create(
        model="tiny", max_tokens=8, system="You are a knight.",
        messages=[{"role": "user", "content": "Greet the king"}], **GREEDY,
    )  # fmt: skip
    assert message.type == "message" and message.role == "assistant" and message.model == "tiny"
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"] and message.content[0].text
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 8
    direct = requests.post(stack.llama_url + "/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}],
        "max_tokens": 8, "temperature": 0, "top_k": 1,
    }).json()  # fmt: skip
    assert message.content[0].text == direct["choices"][0]["message"]["content"]
    assert message.usage.input_tokens == direct["usage"]["prompt_tokens"]


def test_stream_events_add_up_to_the_whole_message(client):
    kwargs = {"model": "tiny", "max_tokens": 10, "messages": [{"role": "user", "content": "Tell a story"}], **GREEDY}
    whole = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_message()
    types = [event.type for event in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_start" in types and "content_block_stop" in types and "message_delta" in types
    deltas = [event.delta.text for event in events if event.type == "content_block_delta"]
    assert "".join(deltas) == whole.content[0].text == final.content[0].text
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 10
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_a_raw_stream_names_each_event_and_pings(stack):
    body = {"model": "tiny", "max_tokens": 3, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = requests.post(stack.url("/v1/messages"), json=body, headers={"x-api-key": stack.token}, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_forced_tool_use_and_the_tool_result_round_trip(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(
        model="tiny", max_tokens=CALL_TOKENS, messages=messages, tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )  # fmt: skip
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input["city"] in ("Paris", "Rome") and call.id
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 25 C"}]},
    ]
    # The tiny model calls a tool whenever tools are offered (tiny_model.py): so it does again.
    second = client.messages.create(model="tiny", max_tokens=CALL_TOKENS, messages=messages, tools=[WEATHER],
                                    tool_choice={"type": "auto", "disable_parallel_tool_use": True})  # fmt: skip
    assert second.stop_reason == "tool_use" and second.content[-1].type == "tool_use"
    assert second.usage.input_tokens > first.usage.input_tokens


def test_any_tool_streams_the_call_as_input_json_deltas(client):
    with client.messages.stream(
        model="tiny", max_tokens=CALL_TOKENS, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER],
        tool_choice={"type": "any"},
    ) as stream:  # fmt: skip
        events = list(stream)
        final = stream.get_final_message()
    starts = [event.content_block for event in events if event.type == "content_block_start"]
    assert any(block.type == "tool_use" and block.name == "get_weather" for block in starts)
    partial = "".join(
        event.delta.partial_json for event in events
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
    )  # fmt: skip
    assert partial and final.stop_reason == "tool_use"
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.input["city"] in ("Paris", "Rome")


def test_count_tokens_is_what_the_message_is_charged(client):
    messages = [{"role": "user", "content": "Count me, and count the tool"}]
    counted = client.messages.count_tokens(model="tiny", system="Be brief.", messages=messages, tools=[WEATHER])
    answered = client.messages.create(model="tiny", max_tokens=1, system="Be brief.", messages=messages,
                                      tools=[WEATHER])  # fmt: skip
    without_tools = client.messages.count_tokens(model="tiny", system="Be brief.", messages=messages)
    assert counted.input_tokens == answered.usage.input_tokens
    assert without_tools.input_tokens < counted.input_tokens


def test_errors_come_in_anthropics_shape(client, stack):
    with pytest.raises(anthropic.BadRequestError) as missing:
        client.messages.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=0)
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in missing.value.body["error"]["message"]

    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["error"]["type"] == "not_found_error"

    with pytest.raises(anthropic.BadRequestError) as server_tool:
        client.messages.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}],
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])  # fmt: skip
    assert "only custom tools" in server_tool.value.body["error"]["message"]

    bad = anthropic.Anthropic(base_url=stack.url(""), api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        bad.messages.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert denied.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid API Key"},
    }

    response = requests.post(stack.url("/v1/messages"), data=b"{", headers={"x-api-key": stack.token}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_a_stream_opens_at_once_and_pings_while_its_job_waits(stack, redis_server):
    # As Anthropic's API does: message_start as soon as the request is taken, then pings, so the
    # client and any proxy see a live connection however long the queue.
    redis = redis_server.client(1)
    with unserved_model(redis) as model:
        body = {"model": model, "max_tokens": 3, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        names: list[str] = []
        with requests.post(stack.url("/v1/messages"), json=body, headers={"x-api-key": stack.token},
                           stream=True, timeout=30) as response:  # fmt: skip
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith(b"event: "):
                    names.append(line.removeprefix(b"event: ").decode())
                if names.count("ping") == 2:
                    break
        assert names == ["message_start", "ping", "ping"]
        # The client left while its job waited: the job is withdrawn from the queue.
        messages = QueueKeys(Queue.LLM.for_model(model)).messages_hash
        wait_until(lambda: redis.hlen(messages) == 0, timeout=10, what="the waiting job withdrawn")
