"""OpenAI's Responses API through velesio, with the official `openai` SDK and `openai-agents`.

The event names, their fields and the response object follow OpenAI's API reference
(platform.openai.com/docs/api-reference/responses and /responses-streaming); the SDK's own
stream reader (``client.responses.stream``) checks their order and indices, and raises on a
stream it cannot follow. Forced tool calls work on the embedded tiny model (tiny_model.py).
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
import requests

GREEDY = {"temperature": 0.0}
# The tiny model spells a call out character by character, with random JSON whitespace.
CALL_TOKENS = 400
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=stack.url("/v1"), api_key=stack.token, max_retries=0) as sdk:
        yield sdk


def test_create_answers_with_a_message_and_usage(client, stack):
    response = client.responses.create(model="tiny", instructions="You are a knight.", input="Greet the king",
                                       max_output_tokens=8, **GREEDY)  # fmt: skip
    assert response.id.startswith("resp_") and response.object == "response" and response.model == "tiny"
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.output_text and response.output_text == message.content[0].text
    assert response.usage.output_tokens == 8
    assert response.instructions == "You are a knight." and response.max_output_tokens == 8
    direct = requests.post(stack.llama_url + "/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}],
        "max_tokens": 8, "temperature": 0,
    }).json()  # fmt: skip
    assert response.output_text == direct["choices"][0]["message"]["content"]
    assert response.usage.input_tokens == direct["usage"]["prompt_tokens"]


def test_the_sdks_stream_reader_follows_the_event_sequence(client):
    kwargs = {"model": "tiny", "input": [{"role": "user", "content": [{"type": "input_text", "text": "A story"}]}],
              "max_output_tokens": 400, **GREEDY}  # fmt: skip
    whole = client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_response() if whole.status == "completed" else None
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          f"response.{whole.status}"]  # fmt: skip
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == whole.output_text
    last = events[-1].response
    assert last.output_text == whole.output_text and last.usage.output_tokens == whole.usage.output_tokens
    if final is not None:
        assert final.output_text == whole.output_text


def test_a_tool_loop_with_function_call_output(client):
    forced = {"type": "function", "name": "get_weather"}
    first = client.responses.create(model="tiny", input="Weather in Paris?", tools=[WEATHER], tool_choice=forced,
                                    parallel_tool_calls=False, max_output_tokens=CALL_TOKENS)  # fmt: skip
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] in ("Paris", "Rome")
    assert call.call_id and call.status == "completed"
    second = client.responses.create(
        model="tiny", tools=[WEATHER], max_output_tokens=6,
        input=[{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 25 C"}],
    )  # fmt: skip
    assert second.output and second.usage.input_tokens > first.usage.input_tokens


def test_a_streamed_tool_call_arrives_as_argument_deltas(client):
    with client.responses.stream(model="tiny", input="Weather?", tools=[WEATHER], tool_choice="required",
                                 parallel_tool_calls=False, max_output_tokens=CALL_TOKENS) as stream:  # fmt: skip
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas == done.arguments and json.loads(done.arguments)["city"] in ("Paris", "Rome")
    [call] = [item for item in final.output if item.type == "function_call"]
    assert call.arguments == done.arguments and call.name == "get_weather"


def test_previous_response_id_continues_the_conversation(client, stack):
    first = client.responses.create(model="tiny", input="My name is Ada.", max_output_tokens=4)
    second = client.responses.create(model="tiny", input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=4)  # fmt: skip
    alone = client.responses.create(model="tiny", input="What is my name?", max_output_tokens=4)
    assert second.previous_response_id == first.id
    # The first turn (question and answer) is in the second's prompt.
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.input_tokens - 2

    assert client.responses.retrieve(first.id).output_text == first.output_text
    other = openai.OpenAI(base_url=stack.url("/v1"), api_key=stack.other_token, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="tiny", input="hi", previous_response_id=first.id, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(first.id)

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)

    unstored = client.responses.create(model="tiny", input="hi", store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_a_streamed_response_is_stored_too(client):
    with client.responses.stream(model="tiny", input="hi", max_output_tokens=3) as stream:
        events = list(stream)
    stored = client.responses.retrieve(events[-1].response.id)
    assert stored.output_text == events[-1].response.output_text


def test_input_tokens_counts_the_prompt_the_model_sees(client, stack):
    body = {"model": "tiny", "input": "Count me", "instructions": "Be brief.", "tools": [WEATHER]}
    counted = requests.post(stack.url("/v1/responses/input_tokens"), json=body, headers=stack.auth, timeout=30)
    answered = client.responses.create(**body, max_output_tokens=1)
    assert counted.status_code == 200 and counted.json()["object"] == "response.input_tokens"
    assert counted.json()["input_tokens"] == answered.usage.input_tokens


def test_hosted_tools_are_left_out_and_namespaces_flattened(stack):
    """As Codex sends them: web_search always, some functions in a namespace."""

    def count(tools: list[dict]) -> int:
        body = {"model": "tiny", "input": "hi", "tools": tools}
        return requests.post(stack.url("/v1/responses/input_tokens"), json=body, headers=stack.auth, timeout=30).json()[
            "input_tokens"
        ]

    assert count([WEATHER, {"type": "web_search", "external_web_access": False}]) == count([WEATHER])
    namespaced = {"type": "namespace", "name": "weather", "description": "Weather tools", "tools": [WEATHER]}
    assert count([namespaced]) == count([WEATHER])


def test_json_schema_text_format_constrains_the_answer(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}  # fmt: skip
    response = client.responses.create(
        model="tiny", input="Say ok", max_output_tokens=40,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert isinstance(json.loads(response.output_text)["ok"], bool)


def test_errors_come_in_openais_shape(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="tiny", input="hi", max_output_tokens=0)
    assert bad.value.body["type"] == "invalid_request_error" and "max_output_tokens" in bad.value.body["message"]
    with pytest.raises(openai.APIStatusError) as hosted:
        client.responses.create(
            model="tiny", input="hi", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"}
        )
    assert hosted.value.status_code == 501 and "only function tools" in hosted.value.body["message"]
    with pytest.raises(openai.APIStatusError) as item:
        client.responses.create(model="tiny", input=[{"type": "item_reference", "id": "msg_1"}])
    assert item.value.status_code == 501 and "'item_reference' input items" in item.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="tiny", input="hi", tools=[WEATHER],
                                tool_choice={"type": "function", "name": "nope"})  # fmt: skip


def test_the_agents_sdk_runs_an_agent_with_a_function_tool(stack):
    agents = pytest.importorskip("agents")
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "Sunny"

    async def run() -> object:
        sdk = openai.AsyncOpenAI(base_url=stack.url("/v1"), api_key=stack.token, max_retries=0)
        model = agents.OpenAIResponsesModel(model="tiny", openai_client=sdk)
        agent = agents.Agent(
            name="weather", instructions="Answer with the weather.", model=model, tools=[get_weather],
            model_settings=agents.ModelSettings(tool_choice="get_weather", parallel_tool_calls=False,
                                                max_tokens=CALL_TOKENS),
            # The tiny model calls a tool whenever tools are offered (tiny_model.py), so the run
            # ends with the tool's answer rather than asking the model again and again.
            tool_use_behavior="stop_on_first_tool",
        )  # fmt: skip
        return await agents.Runner.run(agent, "Weather in Paris?", max_turns=3)

    agents.set_tracing_disabled(True)
    result = asyncio.run(run())
    assert len(calls) == 1
    assert [item.type for item in result.new_items] == ["tool_call_item", "tool_call_output_item"]
    assert result.final_output == "Sunny"
