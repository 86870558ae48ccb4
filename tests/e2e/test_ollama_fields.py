"""Ollama's newer request fields and model facts through velesio, field by field, with the official
`ollama` client (its pydantic types are the published response models) and plain requests.

The references are the stack's own llama-server (`stack.llama_url`): with greedy sampling, what
velesio answers for an Ollama field must be what llama-server answers for the same tokens.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import ollama
import pytest
import requests

GREEDY = {"temperature": 0, "seed": 3}
MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]


@pytest.fixture
def client(stack):
    with ollama.Client(host=stack.base_url, headers=stack.auth) as sdk:
        yield sdk


def llama(stack, path: str, body: dict) -> dict:
    response = requests.post(stack.llama_url + path, json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def post(stack, path: str, body: dict) -> requests.Response:
    return requests.post(stack.url(path), json=body, headers=stack.auth, timeout=60)


def test_generate_answers_the_conversations_tokens_as_context(client, stack):
    first = client.generate(model="tiny", prompt="Greet the king", options={"num_predict": 6, **GREEDY})
    rendered = llama(stack, "/apply-template", {"messages": [{"role": "user", "content": "Greet the king"}]})
    prompt_tokens = llama(stack, "/tokenize", {"content": rendered["prompt"], "add_special": True})["tokens"]
    assert first.context[: len(prompt_tokens)] == prompt_tokens
    assert len(first.context) == len(prompt_tokens) + first.eval_count
    assert llama(stack, "/detokenize", {"tokens": first.context[len(prompt_tokens) :]})["content"] == first.response

    streamed = list(client.generate(model="tiny", prompt="Greet the king", stream=True,
                                    options={"num_predict": 6, **GREEDY}))  # fmt: skip
    assert streamed[-1].context == first.context and all(chunk.context is None for chunk in streamed[:-1])


def test_context_is_prepended_as_tokens(client, stack):
    first = client.generate(model="tiny", prompt="Greet the king", options={"num_predict": 5, **GREEDY})
    second = client.generate(model="tiny", prompt="And the queen?", context=first.context,
                             options={"num_predict": 7, **GREEDY})  # fmt: skip
    turn = llama(stack, "/apply-template", {"messages": [{"role": "user", "content": "And the queen?"}]})["prompt"]
    turn_tokens = llama(stack, "/tokenize", {"content": turn, "add_special": False})["tokens"]
    expected = llama(stack, "/completion", {"prompt": [*first.context, *turn_tokens], "n_predict": 7, **GREEDY})
    assert second.response == expected["content"] and second.eval_count == 7
    assert second.context == [*first.context, *turn_tokens, *second.context[len(first.context) + len(turn_tokens) :]]

    # A raw prompt continues the context's tokens with its text; no context comes back (Ollama's way).
    once = llama(stack, "/tokenize", {"content": "Once upon a time", "add_special": True})["tokens"]
    raw = client.generate(model="tiny", prompt=" there", raw=True, context=once, options={"num_predict": 6, **GREEDY})
    reference = llama(stack, "/completion", {"prompt": [*once, " there"], "n_predict": 6, **GREEDY})
    assert raw.response == reference["content"] and raw.context is None


def test_a_template_of_its_own_renders_system_and_prompt(client):
    template = "{{ if .System }}[{{ .System }}] {{ end }}Q: {{ .Prompt }}\nA:{{ .Response }} (end)"
    templated = client.generate(model="tiny", prompt="Who rules?", system="Be brief", template=template,
                                options={"num_predict": 6, **GREEDY})  # fmt: skip
    raw = client.generate(model="tiny", prompt="[Be brief] Q: Who rules?\nA:", raw=True,
                          options={"num_predict": 6, **GREEDY})  # fmt: skip
    assert templated.response == raw.response and templated.prompt_eval_count == raw.prompt_eval_count


@pytest.mark.parametrize("template", ["{{ range .Messages }}{{ .Content }}{{ end }}", "{{ if .System }}open"])
def test_a_template_velesio_cannot_render_is_a_400(stack, template):
    response = post(stack, "/api/generate", {"model": "tiny", "prompt": "x", "template": template})
    assert response.status_code == 400 and "template" in response.json()["error"]


def test_think_off_is_passed_on_and_levels_need_a_thinking_model(client, stack):
    assert client.chat(model="tiny", messages=MESSAGES, think=False, options={"num_predict": 3}).done
    assert client.generate(model="tiny", prompt="Hi", think=False, options={"num_predict": 3}).done
    for think in (True, "high", "low"):
        response = post(stack, "/api/chat", {"model": "tiny", "messages": MESSAGES, "think": think})
        assert response.status_code == 400 and response.json() == {"error": '"tiny" does not support thinking'}
    response = post(stack, "/api/generate", {"model": "tiny", "prompt": "Hi", "think": "extreme"})
    assert response.status_code == 400 and set(response.json()) == {"error"}


def test_chat_logprobs_are_llama_servers(client, stack):
    answer = client.chat(model="tiny", messages=MESSAGES, logprobs=True, top_logprobs=3,
                         options={"num_predict": 5, **GREEDY})  # fmt: skip
    assert len(answer.logprobs) == answer.eval_count == 5
    assert "".join(entry.token for entry in answer.logprobs) == answer.message.content
    body = {"messages": MESSAGES, "max_tokens": 5, "logprobs": True, "top_logprobs": 3, **GREEDY}
    reference = llama(stack, "/v1/chat/completions", body)
    expected = reference["choices"][0]["logprobs"]["content"]
    for got, want in zip(answer.logprobs, expected, strict=True):
        assert got.token == want["token"] and got.logprob == pytest.approx(want["logprob"], abs=1e-4)
        assert [top.token for top in got.top_logprobs] == [top["token"] for top in want["top_logprobs"]]

    chunks = list(client.chat(model="tiny", messages=MESSAGES, logprobs=True, stream=True,
                              options={"num_predict": 5, **GREEDY}))  # fmt: skip
    streamed = [entry for chunk in chunks[:-1] for entry in chunk.logprobs]
    assert [entry.token for entry in streamed] == [entry.token for entry in answer.logprobs]
    assert all(entry.top_logprobs is None for entry in streamed)  # top_logprobs 0: the chosen token only


def test_generate_logprobs_raw_and_templated(client, stack):
    raw = client.generate(model="tiny", prompt="Once upon a time", raw=True, logprobs=True, top_logprobs=2,
                          options={"num_predict": 4, **GREEDY})  # fmt: skip
    reference = llama(stack, "/completion", {"prompt": "Once upon a time", "n_predict": 4, "n_probs": 2, **GREEDY})
    expected = reference["completion_probabilities"]
    assert [entry.token for entry in raw.logprobs] == [entry["token"] for entry in expected]
    assert all(len(entry.top_logprobs) == 2 and entry.logprob <= 0 for entry in raw.logprobs)
    templated = client.generate(model="tiny", prompt="Hi", logprobs=True, options={"num_predict": 4, **GREEDY})
    assert "".join(entry.token for entry in templated.logprobs) == templated.response


@pytest.mark.parametrize("top", [-1, 21, "3"])
def test_top_logprobs_out_of_ollamas_range_is_a_400(stack, top):
    response = post(stack, "/api/chat", {"model": "tiny", "messages": MESSAGES, "logprobs": True, "top_logprobs": top})
    assert response.status_code == 400 and set(response.json()) == {"error"}


def test_format_as_a_json_schema_constrains_generate(stack):
    schema = {"type": "string", "enum": ["aye", "nay"]}
    body = {"model": "tiny", "prompt": "Greet the king", "format": schema, "stream": False}
    answer = post(stack, "/api/generate", {**body, "options": {"num_predict": 8, **GREEDY}}).json()
    assert json.loads(answer["response"]) in ("aye", "nay") and answer["done_reason"] == "stop"


def test_format_on_chat_is_llama_servers_json_schema(stack):
    # maxLength lets the tiny model's nonsense string end, so the object closes before the token limit.
    short_string = {"type": "string", "maxLength": 12}
    schema = {"type": "object", "properties": {"answer": short_string}, "required": ["answer"]}
    body = {"model": "tiny", "messages": MESSAGES, "format": schema, "stream": False}
    response = post(stack, "/api/chat", {**body, "options": {"num_predict": 64, **GREEDY}})
    format = {"type": "json_schema", "json_schema": {"name": "format", "schema": schema}}
    reference = llama(
        stack, "/v1/chat/completions", {"messages": MESSAGES, "response_format": format, "max_tokens": 64, **GREEDY}
    )
    assert response.status_code == 200, response.text
    assert reference["choices"][0]["finish_reason"] == response.json()["done_reason"] == "stop"
    content = response.json()["message"]["content"]
    assert content == reference["choices"][0]["message"]["content"]
    assert set(json.loads(content)) == {"answer"} and len(json.loads(content)["answer"]) <= 12


def test_a_prompt_longer_than_the_context_is_a_400_with_truncate_false(stack):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "word " * 6000}], "truncate": False}
    response = post(stack, "/api/chat", body)
    assert response.status_code == 400 and "context" in response.json()["error"]
    assert post(stack, "/api/chat", {**body, "truncate": "no"}).status_code == 400  # not a boolean


#: A chat whose first turn alone overflows the context (4096 tokens a slot): Ollama keeps the system
#: messages and the latest turns that fit, here everything from the first answer on.
OVERFLOWING = [
    {"role": "system", "content": "You are a knight."},
    {"role": "user", "content": "word " * 5000},
    {"role": "assistant", "content": "Aye."},
    {"role": "user", "content": "sword " * 1500},
    {"role": "assistant", "content": "Aye."},
    {"role": "user", "content": "Greet the king"},
]


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_over_the_context_drops_its_oldest_turns_as_ollama_does(stack, stream):
    kept = [OVERFLOWING[0], *OVERFLOWING[2:]]
    reference = llama(stack, "/v1/chat/completions", {"messages": kept, "max_tokens": 4, **GREEDY})
    body = {"model": "tiny", "messages": OVERFLOWING, "stream": stream, "options": {"num_predict": 4, **GREEDY}}
    response = post(stack, "/api/chat", body)
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert lines[-1]["done"] and lines[-1]["prompt_eval_count"] == reference["usage"]["prompt_tokens"]
    content = "".join(line["message"]["content"] for line in lines)
    assert content == reference["choices"][0]["message"]["content"]


@pytest.mark.parametrize("raw", [False, True])
def test_a_generation_over_the_context_is_cut_as_ollamas_runner_cuts_it(stack, raw):
    prompt = "word " * 6000
    if raw:
        full = llama(stack, "/tokenize", {"content": prompt, "add_special": True})["tokens"]
    else:
        rendered = llama(stack, "/apply-template", {"messages": [{"role": "user", "content": prompt}]})["prompt"]
        full = llama(stack, "/tokenize", {"content": rendered, "add_special": True})["tokens"]
    # 4096 tokens a slot, 4 of them left for the answer: Ollama's 4 first tokens, then the latest.
    # (The generated text is not compared with llama-server's on the same tokens: on the tiny
    # model's near-tied logits a prompt cached in another slot may pick another token.)
    kept = full[:4] + full[len(full) - 4088 :]
    body = {"model": "tiny", "prompt": prompt, "raw": raw, "stream": False, "options": {"num_predict": 4, **GREEDY}}
    answer = post(stack, "/api/generate", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["prompt_eval_count"] == len(kept) == 4092 and answer.json()["eval_count"] == 4
    if not raw:
        context = answer.json()["context"]
        assert context[: len(kept)] == kept
        assert llama(stack, "/detokenize", {"tokens": context[len(kept) :]})["content"] == answer.json()["response"]
    assert post(stack, "/api/generate", {**body, "truncate": False}).status_code == 400


def test_a_tool_round_trip_renders_as_openais(client, stack):
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": city}}]
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "Sunny, 21C", "tool_name": "weather"},
    ]  # fmt: skip
    # Enough tokens for the tiny model's whole call (about 75), so both sides parse one out.
    answer = client.chat(model="tiny", messages=messages, tools=tools, options={"num_predict": 128, **GREEDY})
    openai_messages = [
        messages[0],
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "call_0",
         "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "content": "Sunny, 21C", "name": "weather"},
    ]  # fmt: skip
    reference = llama(
        stack, "/v1/chat/completions", {"messages": openai_messages, "tools": tools, "max_tokens": 128, **GREEDY}
    )
    (choice,) = reference["choices"]
    assert choice["finish_reason"] == "tool_calls" and answer.done_reason == "stop"
    assert answer.message.content == choice["message"]["content"]
    calls = [(call.function.name, dict(call.function.arguments)) for call in answer.message.tool_calls or ()]
    expected = [
        (call["function"]["name"], json.loads(call["function"]["arguments"]))
        for call in choice["message"]["tool_calls"]
    ]
    assert calls == expected and expected
    assert answer.prompt_eval_count == reference["usage"]["prompt_tokens"]
    assert answer.eval_count == reference["usage"]["completion_tokens"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"model": "tiny", "prompt": "What is this?", "images": ["iVBORw0KGgo="]}),
        ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "?", "images": ["iVBORw0KGgo="]}]}),
    ],
)
def test_images_to_a_text_model_are_llama_servers_refusal_as_a_400(stack, path, body):
    response = post(stack, path, body)
    assert response.status_code == 400 and set(response.json()) == {"error"}
    assert "image input is not supported" in response.json()["error"]


def test_ps_show_and_version_carry_what_newer_clients_read(client, stack):
    (running,) = client.ps().models
    assert running.name == running.model == "tiny:latest" and running.context_length == 4096
    assert running.size > 0 and running.size_vram == 0 and running.expires_at > datetime.now(UTC)
    assert running.details.family == "llama"

    shown = client.show("tiny")
    # Ollama's list, in Ollama's order, from what llama-server's /props says of the model (the stack
    # runs llama-server with --embeddings); the tiny model's template lists tools, so "tools" is in it.
    props = requests.get(stack.llama_url + "/props", timeout=10).json()
    template = props["chat_template_caps"]
    found = {
        "completion": True,
        "tools": template["supports_tools"],
        "embedding": True,
        "vision": props["modalities"]["vision"],
        "thinking": template["supports_reasoning_effort"],
    }
    assert shown.capabilities == [name for name, has in found.items() if has] and "tools" in shown.capabilities
    assert shown.modelinfo["llama.context_length"] > 0 and "num_ctx" in shown.parameters
    assert shown.modified_at is not None and shown.modified_at <= datetime.now(UTC)
    (listed,) = client.list().models
    assert listed.modified_at == shown.modified_at

    version = requests.get(stack.url("/api/version"), headers=stack.auth, timeout=10).json()
    assert [int(part) for part in version["version"].split(".")] >= [0, 12, 11]  # logprobs came in 0.12.11
