"""Ollama's API (/api/*, GET /), route by route, as its clients read it (CONTRACTS.md 4 and 6.10).

The fast layer: the real API and queue over a fake model (see tests/support/fake_backend.py).
tests/e2e/test_ollama.py runs the official `ollama` client against a real llama-server.
"""

from __future__ import annotations

import re

import pytest

from tests.fast.conftest import ndjson
from tests.support.fake_backend import (
    MODEL,
    N_CTX,
    STORY,
    THOUGHT,
    TOOL_ARGUMENTS,
    embedding,
    render_chat,
    token_of,
    tokenize,
)

TAGGED = f"{MODEL}:latest"
MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def ollama_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json) == {"error"} and isinstance(response.json["error"], str) and response.json["error"]
    return response.json["error"]


def assert_final(line: dict, *, done_reason: str, eval_count: int, prompt_eval_count: int) -> None:
    """Ollama's final object: done, its reason, counts, and durations as integer nanoseconds."""
    assert line["done"] is True and line["done_reason"] == done_reason
    assert line["eval_count"] == eval_count and line["prompt_eval_count"] == prompt_eval_count
    for key in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(line[key], int) and line[key] > 0, key
    assert RFC3339.match(line["created_at"]), line["created_at"]


def test_the_liveness_probe_answers_get_and_head_without_a_token(stack):
    response = stack.get("/", auth=None)
    assert response.status_code == 200 and response.text == "Ollama is running"
    assert stack.request("HEAD", "/", auth=None).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_version(stack, method):
    response = stack.request(method, "/api/version")
    assert response.status_code == 200
    if method == "GET":
        assert [int(part) for part in response.json["version"].split(".")] >= [0, 6, 0]


def test_tags_list_models_with_the_latest_tag_and_are_public(stack):
    response = stack.get("/api/tags", auth=None)
    assert response.status_code == 200
    (model,) = response.json["models"]
    assert model["name"] == model["model"] == TAGGED and model["size"] > 0
    assert model["details"]["format"] == "gguf" and model["details"]["family"] == "llama"
    assert model["details"]["families"] == ["llama"] and model["details"]["parameter_size"] == "2.5M"
    assert stack.request("HEAD", "/api/tags", auth=None).status_code == 200


def test_ps_lists_the_loaded_models_with_their_context(stack):
    (model,) = stack.get("/api/ps").json["models"]
    assert model["model"] == TAGGED and model["context_length"] == N_CTX


@pytest.mark.parametrize("key", ["model", "name"])  # older clients send "name"
def test_show_tells_the_template_and_capabilities(stack, key):
    shown = stack.post("/api/show", {key: TAGGED}).json
    assert "<|im_start|>" in shown["template"] and shown["capabilities"] == ["completion", "embedding"]
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 2048 and shown["details"]["format"] == "gguf"


def test_chat_whole(stack):
    response = stack.post(
        "/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False, "options": {"num_predict": 4}}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    answer = response.json
    assert answer["model"] == MODEL and answer["message"] == {"role": "assistant", "content": "".join(STORY[:4])}
    assert_final(answer, done_reason="length", eval_count=4, prompt_eval_count=len(tokenize(render_chat(MESSAGES))))
    assert answer["total_duration"] >= answer["eval_duration"]


def test_chat_streams_ndjson_by_default_and_adds_up(stack):
    written = stack.writes("POST", "/api/chat", {"model": TAGGED, "messages": MESSAGES})
    assert written.status == 200 and written.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson(written.body)
    assert all(line["model"] == TAGGED and RFC3339.match(line["created_at"]) for line in lines)
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == "".join(STORY)
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert_final(
        lines[-1], done_reason="stop", eval_count=len(STORY), prompt_eval_count=len(tokenize(render_chat(MESSAGES)))
    )
    # One JSON object per line; a write holds whole lines (those that arrived together), never part of one.
    assert all(chunk.endswith(b"\n") for chunk in written.chunks)


def test_lines_that_arrive_together_go_out_in_one_write(stack):
    stack.llm.events_per_read = 4
    written = stack.writes("POST", "/api/chat", {"model": TAGGED, "messages": MESSAGES, "options": {"num_predict": 8}})
    lines = ndjson(written.body)
    assert "".join(line["message"]["content"] for line in lines) == "".join(STORY[:8])
    assert [line["done"] for line in lines] == [False] * 8 + [True]
    assert max(chunk.count(b"\n") for chunk in written.chunks) >= 4
    assert all(chunk.endswith(b"\n") for chunk in written.chunks)


def test_chat_options_become_llama_cpps_sampling(stack):
    options = {"num_predict": 2, "temperature": 0.1, "top_k": 7, "seed": 3, "num_keep": 5, "num_ctx": 8192}
    stack.post("/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False, "options": options})
    kind, payload = stack.llm.received[-1]
    assert kind == "chat" and payload["max_tokens"] == 2 and payload["n_keep"] == 5
    assert (payload["temperature"], payload["top_k"], payload["seed"]) == (0.1, 7, 3)
    assert "num_ctx" not in payload and "n_ctx" not in payload  # the worker's to decide


def test_thinking_is_ollamas_thinking_field_and_think_false_turns_it_off(stack):
    stack.llm.thinking = True
    answer = stack.post("/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False}).json
    assert answer["message"]["thinking"] == "".join(THOUGHT) and answer["message"]["content"] == "".join(STORY)
    lines = ndjson(stack.writes("POST", "/api/chat", {"model": MODEL, "messages": MESSAGES}).body)
    assert "".join(line["message"].get("thinking", "") for line in lines) == "".join(THOUGHT)
    off = stack.post("/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False, "think": False}).json
    assert "thinking" not in off["message"] and off["message"]["content"] == "".join(STORY)


def test_tool_calls_have_object_arguments_whole_and_streamed(stack):
    expected = [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]
    body = {"model": MODEL, "messages": MESSAGES, "tools": TOOLS}
    answer = stack.post("/api/chat", {**body, "stream": False}).json
    assert answer["message"]["tool_calls"] == expected
    lines = ndjson(stack.writes("POST", "/api/chat", body).body)
    # The fragments are merged: the calls leave whole, in the final line.
    assert lines[-1]["done"] is True and lines[-1]["message"]["tool_calls"] == expected
    assert "".join(TOOL_ARGUMENTS) not in b"".join(str(line).encode() for line in lines[:-1]).decode()


def test_a_tool_call_in_the_history_goes_to_the_model_with_json_string_arguments(stack):
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "weather"},
    ]
    assert stack.post("/api/chat", {"model": MODEL, "messages": history, "stream": False}).status_code == 200
    sent = stack.llm.received[-1][1]["messages"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
    assert sent[3] == {"role": "tool", "content": "sunny", "name": "weather"}


def test_generate_renders_the_models_template_tokenizes_it_and_completes_the_tokens(stack):
    body = {"model": MODEL, "prompt": "Greet the king", "system": "You are a knight.", "stream": False}
    generated = stack.post("/api/generate", {**body, "options": {"num_predict": 3}}).json
    prompt_tokens = tokenize(render_chat(MESSAGES))
    assert generated["response"] == "".join(STORY[:3])
    assert_final(generated, done_reason="length", eval_count=3, prompt_eval_count=len(prompt_tokens))
    # Ollama's context: the prompt's tokens, then the response's, for the next turn to continue.
    assert generated["context"] == [*prompt_tokens, *(token_of(piece) for piece in STORY[:3])]
    # llama-server's vocabulary: /apply-template, /tokenize (a first turn starts with the model's
    # special tokens), then /completion of the token ids, which answers the sampled ids.
    assert stack.llm.received == [
        ("apply_template", {"messages": MESSAGES}),
        ("tokenize", {"content": render_chat(MESSAGES), "add_special": True}),
        ("completion", {"prompt": prompt_tokens, "n_predict": 3, "return_tokens": True}),
    ]


def test_context_continues_the_conversation_as_tokens(stack):
    first = stack.post("/api/generate", {"model": MODEL, "prompt": "Greet the king", "stream": False}).json
    stack.llm.received.clear()
    body = {"model": MODEL, "prompt": "And the queen?", "context": first["context"], "stream": False}
    second = stack.post("/api/generate", {**body, "options": {"num_predict": 2}}).json
    turn = render_chat([{"role": "user", "content": "And the queen?"}])
    prompt = [*first["context"], *tokenize(turn)]
    # A later turn continues the context: no special tokens at its start.
    assert stack.llm.received[1] == ("tokenize", {"content": turn, "add_special": False})
    assert stack.llm.received[2] == ("completion", {"prompt": prompt, "n_predict": 2, "return_tokens": True})
    assert second["response"] == "".join(STORY[:2]) and second["prompt_eval_count"] == len(prompt)
    assert second["context"] == [*prompt, *(token_of(piece) for piece in STORY[:2])]


def test_a_raw_prompt_continues_the_context_with_its_text_and_answers_no_context(stack):
    body = {"model": MODEL, "prompt": " there", "raw": True, "context": [1, 2], "stream": False}
    answer = stack.post("/api/generate", {**body, "options": {"num_predict": 2}}).json
    # llama-server's mixed prompt: token ids, then text it tokenizes.
    assert stack.llm.received == [("completion", {"prompt": [1, 2, " there"], "n_predict": 2, "return_tokens": False})]
    assert answer["response"] == "".join(STORY[:2]) and "context" not in answer


def test_a_template_of_its_own_renders_system_and_prompt_without_the_models(stack):
    template = "{{ if .System }}[{{ .System }}] {{ end }}Q: {{ .Prompt }}\nA:{{ .Response }}"
    body = {"model": MODEL, "prompt": "Who rules?", "system": "Be brief", "template": template, "stream": False}
    answer = stack.post("/api/generate", {**body, "options": {"num_predict": 1}}).json
    rendered = "[Be brief] Q: Who rules?\nA:"
    assert [kind for kind, _ in stack.llm.received] == ["tokenize", "completion"]  # no /apply-template
    assert stack.llm.received[0] == ("tokenize", {"content": rendered, "add_special": True})
    assert answer["prompt_eval_count"] == len(tokenize(rendered)) and answer["response"] == STORY[0]


@pytest.mark.parametrize("template", ["{{ range .Messages }}{{ .Content }}{{ end }}", "{{ if .System }}open"])
def test_a_template_velesio_cannot_render_is_a_400(stack, template):
    error = ollama_error(stack.post("/api/generate", {"model": MODEL, "prompt": "x", "template": template}), 400)
    assert "template" in error and stack.llm.received == []


def test_raw_generate_is_a_completion_of_the_prompt_as_it_is(stack):
    body = {"model": MODEL, "prompt": "Once", "raw": True, "stream": False, "options": {"num_predict": 2}}
    answer = stack.post("/api/generate", body).json
    assert answer["response"] == "".join(STORY[:2]) and answer["prompt_eval_count"] == len(tokenize("Once"))
    assert stack.llm.received == [("completion", {"prompt": "Once", "n_predict": 2, "return_tokens": False})]
    assert "context" not in answer  # Ollama answers none for a raw prompt


def test_generate_streams_ndjson_and_the_last_line_carries_the_context(stack):
    written = stack.writes("POST", "/api/generate", {"model": MODEL, "prompt": "hi", "options": {"num_predict": 5}})
    assert written.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson(written.body)
    assert "".join(line["response"] for line in lines) == "".join(STORY[:5])
    assert lines[-1]["response"] == "" and lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 5
    prompt_tokens = tokenize(render_chat([{"role": "user", "content": "hi"}]))
    assert lines[-1]["context"] == [*prompt_tokens, *(token_of(piece) for piece in STORY[:5])]
    assert all("context" not in line for line in lines[:-1])


def test_generate_logprobs_are_llama_servers_with_as_many_alternatives_as_asked(stack):
    body = {"model": MODEL, "prompt": "Once", "raw": True, "stream": False, "options": {"num_predict": 3}}
    answer = stack.post("/api/generate", {**body, "logprobs": True, "top_logprobs": 2}).json
    assert stack.llm.received[-1][1]["n_probs"] == 2
    assert [entry["token"] for entry in answer["logprobs"]] == list(STORY[:3])
    assert all(entry["logprob"] == -0.25 for entry in answer["logprobs"])
    for entry in answer["logprobs"]:
        assert len(entry["top_logprobs"]) == 2 and entry["top_logprobs"][0]["token"] == entry["token"]

    # top_logprobs 0: the chosen token's alone (llama-server is asked for one alternative at least).
    lines = ndjson(stack.writes("POST", "/api/generate", {**body, "stream": True, "logprobs": True}).body)
    assert stack.llm.received[-1][1]["n_probs"] == 1
    streamed = [entry for line in lines[:-1] for entry in line["logprobs"]]
    assert [entry["token"] for entry in streamed] == list(STORY[:3])
    assert all("top_logprobs" not in entry for entry in streamed)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"model": MODEL, "prompt": "What is this?", "images": ["iVBORw0KGgo="]}),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "?", "images": ["iVBORw0KGgo="]}]}),
    ],
)
def test_images_to_a_model_without_vision_are_llama_servers_refusal_as_a_400(stack, path, body):
    assert "image input is not supported" in ollama_error(stack.post(path, body), 400)
    assert stack.llm.received == []


@pytest.mark.parametrize("think", [True, "high"])
def test_think_to_a_model_whose_template_does_not_think_is_a_400(stack, think):
    for path, body in (("/api/chat", {"messages": MESSAGES}), ("/api/generate", {"prompt": "Hi"})):
        error = ollama_error(stack.post(path, {"model": MODEL, **body, "think": think}), 400)
        assert error == f'"{MODEL}" does not support thinking'
    assert stack.llm.received == []


@pytest.mark.parametrize(
    ("format", "sent"),
    [
        ("json", {"response_format": {"type": "json_object"}}),
        (
            {"type": "object"},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "format", "schema": {"type": "object"}},
                }
            },
        ),
    ],
)
def test_format_becomes_a_response_format(stack, format, sent):
    stack.post("/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False, "format": format})
    assert stack.llm.received[-1][1]["response_format"] == sent["response_format"]


def test_an_empty_prompt_loads_and_keep_alive_zero_unloads(stack):
    assert stack.post("/api/generate", {"model": MODEL, "prompt": ""}).json["done_reason"] == "load"
    # Ollama answers "load" to an empty prompt whatever context comes with it.
    assert stack.post("/api/generate", {"model": MODEL, "context": [1, 2]}).json["done_reason"] == "load"
    assert stack.post("/api/generate", {"model": MODEL, "keep_alive": 0}).json["done_reason"] == "unload"
    chat = stack.post("/api/chat", {"model": MODEL, "messages": []}).json
    assert chat["done_reason"] == "load" and chat["message"] == {"role": "assistant", "content": ""}
    assert stack.llm.received == []  # nothing to generate


def test_embed_and_the_legacy_embeddings(stack):
    embedded = stack.post("/api/embed", {"model": MODEL, "input": ["a castle", "a dragon"]}).json
    assert embedded["model"] == MODEL
    assert embedded["embeddings"] == [embedding("a castle"), embedding("a dragon")]
    assert embedded["prompt_eval_count"] == len(tokenize("a castlea dragon"))
    assert isinstance(embedded["total_duration"], int) and embedded["total_duration"] > 0
    legacy = stack.post("/api/embeddings", {"model": MODEL, "prompt": "a castle"}).json
    assert legacy == {"embedding": embedding("a castle")}


def test_an_unknown_model_is_404_naming_it(stack):
    assert "llama3.2" in ollama_error(stack.post("/api/chat", {"model": "llama3.2", "messages": MESSAGES}), 404)
    ollama_error(stack.post("/api/generate", {"model": "nope", "prompt": "x"}), 404)
    ollama_error(stack.post("/api/show", {"model": "nope"}), 404)


def test_a_stream_that_fails_midway_ends_with_an_error_line_and_status_200(make_stack):
    stack = make_stack(JOB_TIMEOUT="0.3")
    stack.llm.stall_after = 2
    written = stack.writes("POST", "/api/chat", {"model": MODEL, "messages": MESSAGES})
    lines = ndjson(written.body)
    assert written.status == 200 and len(lines) == 3
    assert lines[-1] == {"error": "the job did not finish within 0.3 s"}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": 5}]}, 400),
        ("/api/chat", {"model": MODEL, "messages": MESSAGES, "options": {"num_predict": "many"}}, 400),
        ("/api/chat", {"model": MODEL, "messages": MESSAGES, "options": {"top_p": 7}}, 400),
        ("/api/chat", {"messages": MESSAGES}, 400),
        ("/api/generate", {"model": MODEL, "prompt": "x", "suffix": "y"}, 501),
        ("/api/generate", {"model": MODEL, "prompt": "x", "format": "yaml"}, 400),
        ("/api/generate", {"model": MODEL, "prompt": "x", "think": "extreme"}, 400),
        ("/api/generate", {"model": MODEL, "prompt": "x", "context": ["a"]}, 400),
        ("/api/chat", {"model": MODEL, "messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, 400),
        ("/api/embed", {"model": MODEL, "input": 5}, 400),
        ("/api/embed", {"model": MODEL, "input": "x", "dimensions": 8}, 501),
        ("/api/embeddings", {"model": MODEL}, 400),
        ("/api/show", {}, 400),
        ("/api/generate", [1, 2], 400),
    ],
)
def test_bad_requests_get_ollamas_error_shape(stack, path, body, status):
    ollama_error(stack.post(path, body), status)
    assert stack.llm.received == []


def test_malformed_json_unknown_routes_and_methods_use_ollamas_shape(stack):
    assert "JSON" in ollama_error(stack.post("/api/chat", body=b"{"), 400)
    ollama_error(stack.post("/api/pull", {"model": "x"}), 404)
    ollama_error(stack.get("/api/chat"), 405)
