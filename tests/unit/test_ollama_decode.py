"""Ollama's request fields as llama.cpp's: the Go-template subset, think, logprobs, images, routes."""

from __future__ import annotations

import pytest

from velesio_core.backends.base import ModelInfo
from velesio_core.dialects.ollama import decode, encode
from velesio_core.dialects.ollama.capabilities import capabilities
from velesio_core.dialects.ollama.schemas import ChatRequest, GenerateRequest, Options
from velesio_core.dialects.ollama.template import render
from velesio_core.errors import GatewayError

CHATML = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}"


def test_a_template_renders_system_and_prompt_up_to_the_response():
    template = CHATML + "<|im_end|>\n<|im_start|>assistant\n{{ .Response }}<|im_end|>"
    assert render(template, {"System": "S", "Prompt": "P"}) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render(template, {"Prompt": "P"}).startswith("<|im_start|>user\nP")


def test_a_template_trims_and_branches_as_go_does():
    assert render("a  {{- if .System }} s {{ else }} none {{ end -}}  b", {}) == "a none b"
    assert render("{{ if .Prompt }}{{ if .System }}both{{ else }}prompt{{ end }}{{ end }}", {"Prompt": "x"}) == "prompt"
    assert render("{{/* a comment */}}{{ .Prompt }}", {"Prompt": "x"}) == "x"


@pytest.mark.parametrize(
    "template",
    ["{{ range .Messages }}{{ end }}", "{{ .Tools }}", "{{ if .System }}x", "{{ end }}", "{{ json .Prompt }}"],
)
def test_a_template_beyond_the_subset_is_refused(template):
    with pytest.raises(GatewayError) as raised:
        render(template, {"Prompt": "x"})
    assert raised.value.status == 400 and "template" in raised.value.message


@pytest.mark.parametrize(
    ("think", "kwargs"),
    [
        (False, {"enable_thinking": False}),
        (True, {"enable_thinking": True}),
        ("medium", {"enable_thinking": True, "reasoning_effort": "medium"}),
    ],
)
def test_think_goes_to_the_chat_template(think, kwargs):
    payload = decode.chat_payload(ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], think=think))
    assert payload["chat_template_kwargs"] == kwargs


def test_logprobs_ask_llama_server_for_one_alternative_at_least():
    chat = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert decode.chat_payload(chat)["top_logprobs"] == 1 and decode.top_logprobs(chat) == 0
    generate = GenerateRequest(model="m", prompt="x", raw=True, logprobs=True, top_logprobs=5)
    assert decode.completion_payload(generate, "x")["n_probs"] == 5
    assert "n_probs" not in decode.completion_payload(GenerateRequest(model="m", prompt="x", raw=True), "x")


def test_logprobs_are_ollamas_with_as_many_alternatives_as_asked():
    chosen = {"id": 5, "token": " a", "logprob": -0.5, "bytes": [32, 97]}
    other = {"id": 6, "token": " b", "logprob": -1.5, "bytes": [32, 98]}
    entry = {**chosen, "top_logprobs": [chosen, other]}
    assert encode.logprobs([entry], 0) == [{"token": " a", "logprob": -0.5, "bytes": [32, 97]}]
    (one,) = encode.logprobs([entry], 1)
    assert one["top_logprobs"] == [{"token": " a", "logprob": -0.5, "bytes": [32, 97]}]


def test_images_become_data_url_parts_and_tool_messages_keep_their_ids():
    message = {"role": "user", "content": "what?", "images": ["/9j/4AAQ", "iVBORw0KGgo="]}
    tool = {"role": "tool", "content": "21C", "tool_name": "weather", "tool_call_id": "call_7"}
    payload = decode.chat_payload(ChatRequest(model="m", messages=[message, tool]))
    assert payload["messages"][0]["content"] == [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    assert payload["messages"][1] == {"role": "tool", "content": "21C", "name": "weather", "tool_call_id": "call_7"}


@pytest.mark.parametrize(
    ("fields", "route"),
    [
        ({"raw": True, "context": [1, 2]}, decode.GenerateRoute.RAW),
        ({}, decode.GenerateRoute.TOKENS),
        ({"context": [1, 2], "think": True}, decode.GenerateRoute.TOKENS),
        ({"think": "high"}, decode.GenerateRoute.CHAT),
        ({"images": ["iVBOR"]}, decode.GenerateRoute.CHAT),
    ],
)
def test_how_a_generate_runs(fields, route):
    assert decode.generate_route(GenerateRequest(model="m", prompt="x", **fields)) is route


def test_what_a_text_model_refuses():
    text_model = ModelInfo(id="tiny", n_ctx=64, slots=1, chat_template="{{ messages }}", props={})
    for request in (
        GenerateRequest(model="tiny", prompt="x", images=["iVBOR"]),
        ChatRequest(model="tiny", messages=[{"role": "user", "content": "x"}], think="low"),
    ):
        with pytest.raises(GatewayError) as raised:
            decode.check(request, text_model)
        assert raised.value.status == 400
    vision = ModelInfo(id="v", n_ctx=64, slots=1, props={"modalities": {"vision": True}})
    decode.check(GenerateRequest(model="v", prompt="x", images=["iVBOR"]), vision)


@pytest.mark.parametrize(
    ("template", "thinks"),
    [
        ("{% if enable_thinking %}<think>{% endif %}", True),  # Qwen3's Jinja, as llama-server has it
        ("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}", True),  # an Ollama server's Go template
        ("<|im_start|>{{ message.role }}", False),
    ],
)
def test_thinking_is_read_from_the_template(template, thinks):
    model = ModelInfo(id="m", n_ctx=64, slots=1, chat_template=template)
    assert ("thinking" in capabilities(model)) is thinks


def test_truncation_keeps_the_earlier_system_messages_and_every_message_from_the_start():
    roles = ["system", "user", "system", "assistant", "user"]
    request = ChatRequest(model="m", messages=[{"role": role, "content": str(i)} for i, role in enumerate(roles)])
    kept = decode.truncated(request, 3).messages or []
    assert [(message.role, message.content) for message in kept] == [
        ("system", "0"), ("system", "2"), ("assistant", "3"), ("user", "4"),
    ]  # fmt: skip
    assert request.messages is not None and len(request.messages) == 5  # the request itself is left whole


def test_a_prompt_over_the_context_keeps_its_start_and_its_latest_tokens_with_room_to_answer():
    tokens = list(range(100))
    assert decode.truncated_prompt(tokens, n_ctx=200, options=None) == tokens  # it fits
    # A quarter of the context left for the answer, the first 4 tokens kept (Ollama's num_keep).
    assert decode.truncated_prompt(tokens, n_ctx=40, options=None) == [0, 1, 2, 3, *range(74, 100)]
    options = Options(num_keep=2, num_predict=10)
    assert decode.truncated_prompt(tokens, n_ctx=40, options=options) == [0, 1, *range(72, 100)]
    assert len(decode.truncated_prompt(tokens, n_ctx=40, options=Options(num_predict=1000))) == 20  # at most half
