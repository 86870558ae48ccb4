"""OpenAI's API (/v1/*), route by route, as the official SDKs read it (CONTRACTS.md 2.4).

The fast layer: the real API and queue over a fake model (see tests/support/fake_backend.py).
tests/e2e/test_openai.py runs the official SDK against a real llama-server.
"""

from __future__ import annotations

import base64
import struct

import pytest

from tests.fast.conftest import eventually, sse_events
from tests.support.fake_backend import MODEL, STORY, THOUGHT, TOOL_ARGUMENTS, embedding, render_chat, tokenize
from velesio_core.cancellation import Reason

MESSAGES = [{"role": "system", "content": "You are a knight."}, {"role": "user", "content": "Greet the king"}]
PROMPT_TOKENS = len(tokenize(render_chat(MESSAGES)))
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
ERROR_KEYS = {"message", "type", "param", "code"}


def openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json["error"]
    assert set(error) == ERROR_KEYS and error["message"]
    return error


def chat(stack, **body):
    return stack.post("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, **body})


def test_models_list_what_the_workers_serve_and_is_public(stack):
    response = stack.get("/v1/models", auth=None)
    assert response.status_code == 200
    listed = response.json
    assert listed["object"] == "list"
    assert [(model["id"], model["object"]) for model in listed["data"]] == [(MODEL, "model")]
    assert isinstance(listed["data"][0]["created"], int) and listed["data"][0]["owned_by"]


def test_one_model_is_retrieved_by_name(stack):
    response = stack.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200 and response.json["id"] == MODEL and response.json["object"] == "model"
    assert openai_error(stack.get("/v1/models/gpt-4o"), 404)["code"] == "model_not_found"


def test_a_whole_chat(stack):
    response = chat(stack, max_tokens=5)
    assert response.status_code == 200
    answer = response.json
    assert answer["object"] == "chat.completion" and answer["model"] == MODEL
    assert answer["id"].startswith("chatcmpl-") and isinstance(answer["created"], int)
    (choice,) = answer["choices"]
    assert choice["index"] == 0 and choice["message"] == {"role": "assistant", "content": "".join(STORY[:5])}
    assert choice["finish_reason"] == "length"
    assert answer["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 5,
        "total_tokens": PROMPT_TOKENS + 5,
        # The fake's llama-server read nothing from its cache (timings.cache_n 0).
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    # llama-server's own extra in its OpenAI answers, which LLM for Unity reads.
    assert (answer["timings"]["prompt_n"], answer["timings"]["predicted_n"]) == (PROMPT_TOKENS, 5)


def test_a_chat_that_ends_by_itself_finishes_with_stop(stack):
    assert chat(stack).json["choices"][0]["finish_reason"] == "stop"


def test_max_completion_tokens_is_max_tokens(stack):
    answer = chat(stack, max_completion_tokens=3).json
    assert answer["usage"]["completion_tokens"] == 3 and answer["choices"][0]["finish_reason"] == "length"


def test_llama_cpps_own_sampling_options_travel_on(stack):
    assert chat(stack, max_tokens=1, top_k=5, min_p=0.1, repeat_penalty=1.2).status_code == 200
    kind, payload = stack.llm.received[-1]
    assert kind == "chat" and (payload["top_k"], payload["min_p"], payload["repeat_penalty"]) == (5, 0.1, 1.2)
    assert "model" not in payload and "stream" not in payload


def test_events_that_arrive_together_go_out_in_one_write_and_parse_one_by_one(stack):
    whole = chat(stack, max_tokens=8).json["choices"][0]["message"]["content"]
    stack.llm.events_per_read = 4
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8, "stream": True}
    written = stack.writes("POST", "/v1/chat/completions", body)
    events = sse_events(written.chunks)
    assert events[-1] == "[DONE]"
    assert "".join(event["choices"][0]["delta"].get("content") or "" for event in events[:-1]) == whole
    assert len(written.chunks) < len(events) and max(chunk.count(b"data: ") for chunk in written.chunks) >= 4


def test_a_chat_stream_adds_up_and_ends_with_done(stack):
    whole = chat(stack, max_tokens=6).json["choices"][0]["message"]["content"]
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 6, "stream": True}
    written = stack.writes("POST", "/v1/chat/completions", body)
    assert written.status == 200 and written.headers["content-type"].startswith("text/event-stream")
    events = sse_events(written.chunks)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == MODEL for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    # The role in a chunk of its own, first, as llama-server and OpenAI send it.
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert all("role" not in chunk["choices"][0]["delta"] for chunk in chunks[1:])
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[1:]) == whole
    assert all(chunk["choices"][0]["delta"].get("content") != "" for chunk in chunks)  # no empty content deltas
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert chunks[-1]["timings"]["predicted_n"] == 6
    assert b'"usage"' not in written.body  # not asked for


def test_include_usage_adds_a_usage_chunk_before_done(stack):
    body = {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = sse_events(stack.writes("POST", "/v1/chat/completions", body).chunks)
    assert events[-1] == "[DONE]"
    usage = events[-2]
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 4,
        "total_tokens": PROMPT_TOKENS + 4,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert events[-3]["choices"][0]["finish_reason"] == "length"


def test_reasoning_comes_as_reasoning_content(stack):
    stack.llm.thinking = True
    message = chat(stack).json["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(THOUGHT) and message["content"] == "".join(STORY)
    events = sse_events(
        stack.writes("POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stream": True}).chunks
    )
    deltas = [event["choices"][0]["delta"] for event in events[:-1]]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert "".join(delta.get("reasoning_content", "") for delta in deltas[1:]) == "".join(THOUGHT)
    assert "".join(delta.get("content", "") for delta in deltas[1:]) == "".join(STORY)


def test_a_tool_call_whole_and_streamed(stack):
    answer = chat(stack, tools=TOOLS).json
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"] == {"name": "weather", "arguments": "".join(TOOL_ARGUMENTS)}
    assert choice["message"]["content"] is None

    body = {"model": MODEL, "messages": MESSAGES, "tools": TOOLS, "stream": True}
    events = sse_events(stack.writes("POST", "/v1/chat/completions", body).chunks)
    fragments = [call for event in events[:-1] for call in event["choices"][0]["delta"].get("tool_calls", [])]
    assert fragments[0]["function"]["name"] == "weather" and fragments[0]["id"]
    assert "".join(fragment["function"].get("arguments", "") for fragment in fragments) == "".join(TOOL_ARGUMENTS)
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_legacy_completions_whole_and_streamed(stack):
    response = stack.post("/v1/completions", {"model": MODEL, "prompt": "Once", "max_tokens": 3, "stop": "dragon"})
    assert response.status_code == 200
    answer = response.json
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["text"] == "".join(STORY[:3]) and answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["prompt_tokens"] == len(tokenize("Once")) and answer["usage"]["completion_tokens"] == 3
    # llama.cpp's names reached the backend: n_predict, and stop as a list.
    assert stack.llm.received[-1] == ("completion", {"prompt": "Once", "n_predict": 3, "stop": ["dragon"]})

    body = {"model": MODEL, "prompt": ["Once"], "max_tokens": 3, "stream": True}
    events = sse_events(stack.writes("POST", "/v1/completions", body).chunks)
    assert events[-1] == "[DONE]"
    assert all(event["object"] == "text_completion" for event in events[:-1])
    assert "".join(event["choices"][0]["text"] for event in events[:-1]) == answer["choices"][0]["text"]
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_embeddings_as_floats_and_as_base64(stack):
    answer = stack.post("/v1/embeddings", {"model": MODEL, "input": ["a castle", "a dragon"]}).json
    assert answer["object"] == "list" and answer["model"] == MODEL
    assert [(item["object"], item["index"]) for item in answer["data"]] == [("embedding", 0), ("embedding", 1)]
    assert answer["data"][0]["embedding"] == embedding("a castle")
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] == len(tokenize("a castlea dragon"))

    body = {"model": MODEL, "input": "a castle", "encoding_format": "base64"}
    encoded = stack.post("/v1/embeddings", body).json["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(embedding('a castle'))}f", base64.b64decode(encoded))
    assert decoded == pytest.approx(embedding("a castle"), rel=1e-6)


@pytest.mark.parametrize("name", ["gpt-4o", None])
def test_with_one_model_served_any_name_or_none_is_that_model(stack, name):
    # As llama-server serves its one model under whatever name a client sends; model is optional.
    body = {"messages": MESSAGES, "max_tokens": 2, **({"model": name} if name else {})}
    response = stack.post("/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    assert response.json["choices"][0]["message"]["content"] == "".join(STORY[:2])
    assert [kind for kind, _ in stack.llm.received] == ["chat"]


def test_with_several_models_served_an_unknown_name_is_404_model_not_found(stack):
    stack.llm.also_serves = ("other",)
    error = openai_error(chat(stack, model="gpt-4o"), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model" and MODEL in error["message"]
    assert stack.llm.received == []
    assert chat(stack, model="other", max_tokens=1).status_code == 200


def test_with_several_models_served_model_aliases_name_them(make_stack):
    stack = make_stack(MODEL_ALIASES=f"gpt-4o={MODEL}")
    stack.llm.also_serves = ("other",)
    response = chat(stack, model="gpt-4o", max_tokens=1)
    assert response.status_code == 200, response.text
    assert openai_error(chat(stack, model="gpt-3.5-turbo"), 404)["code"] == "model_not_found"


def test_n_choices_are_as_many_answers_with_their_usage_added_up(stack):
    answer = chat(stack, n=3, max_tokens=2).json
    assert [choice["index"] for choice in answer["choices"]] == [0, 1, 2]
    assert {choice["message"]["content"] for choice in answer["choices"]} == {"".join(STORY[:2])}
    assert answer["usage"]["prompt_tokens"] == PROMPT_TOKENS and answer["usage"]["completion_tokens"] == 6
    assert [kind for kind, _ in stack.llm.received] == ["chat"] * 3


def test_chat_logprobs_come_as_llama_server_gives_them(stack):
    choice = chat(stack, max_tokens=2, logprobs=True, top_logprobs=2).json["choices"][0]
    tokens = choice["logprobs"]["content"]
    assert [entry["token"] for entry in tokens] == list(STORY[:2])
    assert all(
        len(entry["top_logprobs"]) == 2 and entry["top_logprobs"][0]["token"] == entry["token"] for entry in tokens
    )
    assert chat(stack, max_tokens=1).json["choices"][0]["logprobs"] is None  # not asked for

    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, "logprobs": True, "stream": True}
    events = sse_events(stack.writes("POST", "/v1/chat/completions", body).chunks)
    streamed = [entry for event in events[1:-2] for entry in event["choices"][0]["logprobs"]["content"]]
    assert [entry["token"] for entry in streamed] == list(STORY[:2])


def test_several_prompts_and_n_are_one_choice_each(stack):
    body = {"model": MODEL, "prompt": ["Once", "Twice"], "n": 2, "max_tokens": 1}
    answer = stack.post("/v1/completions", body).json
    assert [choice["index"] for choice in answer["choices"]] == [0, 1, 2, 3]
    assert {choice["text"] for choice in answer["choices"]} == {STORY[0]}
    prompts = [payload["prompt"] for kind, payload in stack.llm.received if kind == "completion"]
    assert sorted(prompts) == ["Once", "Once", "Twice", "Twice"]


def test_a_wrong_key_is_401_invalid_api_key(stack):
    body = {"model": MODEL, "messages": MESSAGES}
    error = openai_error(stack.post("/v1/chat/completions", body, auth={"Authorization": "Bearer wrong"}), 401)
    assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"


def test_a_prompt_too_long_is_llama_servers_400_in_openais_shape(stack):
    error = openai_error(chat(stack, messages=[{"role": "user", "content": "a" * 600}]), 400)
    assert error["type"] == "exceed_context_size_error"


def test_a_stream_that_fails_midway_ends_with_an_error_chunk_and_no_done(make_stack):
    stack = make_stack(JOB_TIMEOUT="0.3")
    stack.llm.stall_after = 2
    events = sse_events(
        stack.writes("POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stream": True}).chunks
    )
    # The role chunk, the two tokens made before the stall, the error.
    assert len(events) == 4 and "[DONE]" not in events
    assert set(events[-1]) == {"error"} and "0.3 s" in events[-1]["error"]["message"]
    assert set(events[-1]["error"]) == ERROR_KEYS


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": "8"}, 400, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "temperature": 3}, 400, "temperature"),
        ({"model": MODEL, "messages": []}, 400, "messages"),
        ({"model": MODEL, "messages": [{"content": "no role"}]}, 400, "messages"),
        ({"model": 5, "messages": MESSAGES}, 400, "model"),
        ({"model": MODEL, "messages": MESSAGES, "stream": "yes"}, 400, "stream"),
        ({"model": MODEL, "messages": MESSAGES, "n": 0}, 400, "n"),
        ({"model": MODEL, "messages": MESSAGES, "top_logprobs": 2}, 400, "top_logprobs"),
    ],
)
def test_bad_chat_requests_get_openais_error_shape(stack, body, status, field):
    error = openai_error(stack.post("/v1/chat/completions", body), status)
    if field:
        assert error["message"].startswith(field)
    assert stack.llm.received == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/completions", {"model": MODEL, "prompt": "x", "echo": True}, 501),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "suffix": "y"}, 501),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "best_of": 2}, 501),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 6}, 400),
        ("/v1/completions", {"model": MODEL, "prompt": []}, 400),
        ("/v1/completions", {"model": MODEL}, 400),
        ("/v1/embeddings", {"model": MODEL, "input": "x", "dimensions": 8}, 501),
        ("/v1/embeddings", {"model": MODEL, "input": 5}, 400),
        ("/v1/embeddings", {"model": MODEL, "input": "x", "encoding_format": "hex"}, 400),
    ],
)
def test_bad_completion_and_embedding_requests_get_openais_error_shape(stack, path, body, status):
    openai_error(stack.post(path, body), status)


def test_malformed_json_and_unknown_routes_use_openais_shape(stack):
    assert "not valid JSON" in openai_error(stack.post("/v1/chat/completions", body=b"{"), 400)["message"]
    openai_error(stack.get("/v1/nothing-here"), 404)
    openai_error(stack.get("/v1/chat/completions"), 405)


def test_a_client_that_leaves_a_stream_of_several_choices_cancels_every_choice(stack):
    stack.llm.stall_after = 2
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 50, "n": 2, "stream": True}  # a slot each
    written = stack.writes("POST", "/v1/chat/completions", body, disconnect_after=2)
    # Each choice stalls after its role chunk and 2 tokens: the client left before any finished.
    assert 2 <= len(written.chunks) <= 6 and b"[DONE]" not in b"".join(written.chunks)
    eventually(lambda: len(stack.llm.cancelled) == 2, "both generations being cancelled")
    assert stack.llm.cancelled == [Reason.CLIENT_LEFT] * 2
