"""llama.cpp's native API, route by route, as LLM for Unity v2 and v3 call it (CONTRACTS.md 1, 2, 6).

The fast layer: the real API and queue over a fake model (see tests/support/fake_backend.py),
so that every rule of the contract is checked in milliseconds. tests/e2e/test_llamacpp_dialect.py
checks the same routes against a real llama-server.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fast.conftest import arrived, eventually, run, sse_events
from tests.support.fake_backend import CHATML, MODEL, N_CTX, SLOTS, STORY, Hold, embedding, render_chat, tokenize
from tests.support.llmunity import ClientParseError, v2_parse_cumulative, v3_concatenate
from velesio_core.cancellation import Reason

WHOLE_STORY = "".join(STORY)
#: Every field LLMCharacter v2 serialises (JsonUtility writes them all), with its defaults (CONTRACTS.md 1.2).
LLMUNITY_V2_BODY = {
    "prompt": "<|im_start|>system\nYou are a knight.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\n",
    "id_slot": -1,
    "temperature": 0.2,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.05,
    "n_predict": 8,
    "n_keep": 9,
    "stream": True,
    "stop": ["<|im_start|>", "\n<|im_start|>", "<|im_end|>", "\n<|im_end|>"],
    "tfs_z": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
    "penalize_nl": True,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "penalty_prompt": "",
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "seed": 0,
    "ignore_eos": False,
    "n_probs": 0,
    "cache_prompt": True,
    "messages": [],
}


def llama_error(response, status: int, type_name: str) -> dict:
    """llama.cpp's error shape (CONTRACTS.md 2.5), with its status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json["error"]
    assert error["code"] == status and error["type"] == type_name and error["message"]
    return error


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/health", "/v1/health"])
def test_health_answers_get_and_post_without_a_token(stack, method, path):
    # LlamaLib v2 POSTs /health with an empty body.
    response = stack.request(method, path, auth=None)
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_health_is_503_until_a_worker_serves_a_model(make_stack):
    response = make_stack(llm=False).get("/health", auth=None)
    assert llama_error(response, 503, "unavailable_error")
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_props_carry_n_ctx_per_slot_for_llamalib(stack, method):
    # LlamaLib v2 POSTs {"stream": false} and reads default_generation_settings.n_ctx.
    response = stack.request(method, "/props", json={"stream": False})
    assert response.status_code == 200
    props = response.json
    assert props["default_generation_settings"]["n_ctx"] == N_CTX
    assert props["total_slots"] == SLOTS and props["chat_template"] == CHATML


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_template_is_a_name_llm_for_unity_knows(stack, method):
    # v2 looks the answer up in its own dictionary: a Jinja string would throw KeyNotFoundException.
    response = stack.request(method, "/template", body=b"{}")
    assert response.status_code == 200 and response.json == {"template": "chatml"}


@pytest.mark.parametrize("path", ["/completion", "/completions"])
def test_a_whole_completion_is_llama_servers_final_object(stack, path):
    response = stack.post(path, {"prompt": "The hero walks in", "n_predict": 4})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    answer = response.json
    assert answer["content"] == "".join(STORY[:4]) and answer["stop"] is True
    assert answer["tokens_predicted"] == 4 and answer["stop_type"] == "limit"
    assert answer["tokens_evaluated"] == len(tokenize("The hero walks in"))
    assert answer["timings"]["predicted_n"] == 4 and answer["generation_settings"]["n_predict"] == 4


def test_a_completion_runs_to_the_end_of_its_text_and_stops_at_a_stop_string(stack):
    assert stack.post("/completion", {"prompt": "x"}).json["stop_type"] == "eos"
    stopped = stack.post("/completion", {"prompt": "x", "stop": [" knight"]}).json
    assert stopped["content"] == WHOLE_STORY[: WHOLE_STORY.index(" knight")]
    assert stopped["stop_type"] == "word" and stopped["stopping_word"] == " knight"


def test_a_prompt_of_token_ids_is_taken(stack):
    response = stack.post("/completion", {"prompt": [1, 2, 3, "and text"], "n_predict": 1})
    assert response.status_code == 200 and response.json["content"] == STORY[0]


def test_the_stream_is_one_data_event_per_write_with_an_empty_final_content(stack):
    """CONTRACTS.md 1.3, 1.4 and 6.1: what both LLM for Unity parsers need, write for write."""
    whole = stack.post("/completion", {"prompt": "Tell me", "n_predict": 6}).json["content"]
    written = stack.writes("POST", "/completion", {"prompt": "Tell me", "n_predict": 6, "stream": True})
    assert written.status == 200
    assert written.headers["content-type"].startswith("text/event-stream")
    assert written.headers["x-accel-buffering"] == "no"
    for chunk in written.chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and chunk.count(b"data: ") == 1, chunk
    assert b"[DONE]" not in written.body and b"\n\n:" not in written.body  # no [DONE], no comments

    events = sse_events(written.chunks)
    partial, final = events[:-1], events[-1]
    assert len(partial) == 6
    assert all(event["stop"] is False and event["tokens"] for event in partial)
    assert all(isinstance(token, int) for event in partial for token in event["tokens"])
    assert final["stop"] is True and final["content"] == "" and final["tokens"] == []
    assert final["timings"]["predicted_n"] == 6 and final["stop_type"] == "limit" and "truncated" in final
    assert "".join(event["content"] for event in partial) == whole

    # LLM for Unity v2 re-parses the cumulative body at every write: each prefix must parse.
    cumulative = b""
    for chunk in written.chunks:
        cumulative += chunk
        v2_parse_cumulative(cumulative.decode())
    assert v2_parse_cumulative(written.body.decode()) == whole.strip()
    # LlamaLib (v3) parses each write alone.
    content, tokens, last = v3_concatenate(written.chunks)
    assert content == whole and len(tokens) == 6 and last["stop"] is True


def test_tokens_that_arrive_together_still_go_out_one_event_per_write(stack):
    # The relay joins the events of one read into one write for other dialects; LlamaLib parses
    # each write alone, so llama.cpp's stream never does.
    stack.llm.events_per_read = 4
    written = stack.writes("POST", "/completion", {"prompt": "Tell me", "n_predict": 8, "stream": True})
    assert len(written.chunks) == 9 and all(chunk.count(b"data: ") == 1 for chunk in written.chunks)
    content, tokens, last = v3_concatenate(written.chunks)
    assert content == "".join(STORY[:8]) and len(tokens) == 8 and last["stop"] is True


def test_the_streamed_tokens_detokenize_to_the_text(stack):
    events = sse_events(stack.writes("POST", "/completion", {"prompt": "x", "n_predict": 5, "stream": True}).chunks)
    tokens = [token for event in events[:-1] for token in event["tokens"]]
    assert stack.post("/detokenize", {"tokens": tokens}).json == {"content": "".join(STORY[:5])}


def test_llm_for_unity_v2_request_is_accepted_as_sent_and_streams(stack):
    written = stack.writes("POST", "/completion", LLMUNITY_V2_BODY)
    assert written.status == 200
    assert v2_parse_cumulative(written.body.decode()) == "".join(STORY[:8]).strip()
    # Its obsolete fields travel on untouched (llama-server ignores them); the empty messages
    # list does not turn the request into a chat.
    kind, payload = stack.llm.received[-1]
    assert kind == "completion"
    assert payload["tfs_z"] == 0.0 and payload["penalize_nl"] is True and payload["messages"] == []
    assert payload["seed"] == 0 and payload["id_slot"] == -1 and "stream" not in payload


def test_llm_for_unity_v3_sends_json_schema_as_an_object(stack):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    response = stack.post("/completion", {"prompt": "Answer: ", "n_predict": 2, "json_schema": schema, "stream": False})
    assert response.status_code == 200
    assert stack.llm.received[-1][1]["json_schema"] == schema


def test_a_plain_json_stream_would_break_llm_for_unity_v2(stack):
    # The parser port itself must be able to fail, or the stream test above proves nothing.
    whole = stack.post("/completion", {"prompt": "x", "n_predict": 2}).text
    with pytest.raises(ClientParseError):
        v2_parse_cumulative(whole)
    with pytest.raises(ClientParseError):
        v2_parse_cumulative("data: {}\n\ndata: [DONE]\n\n")


def test_an_error_before_the_first_token_keeps_its_http_status(stack):
    # llama-server answers an error that comes before any output as a plain HTTP error (2.2).
    response = stack.post("/completion", {"prompt": "a" * (N_CTX + 1), "stream": True})
    error = llama_error(response, 400, "exceed_context_size_error")
    assert error["n_ctx"] == N_CTX and error["n_prompt_tokens"] == N_CTX + 1


def test_a_stream_that_fails_midway_ends_with_an_error_event(make_stack):
    stack = make_stack(JOB_TIMEOUT="0.3")
    stack.llm.stall_after = 3
    written = stack.writes("POST", "/completion", {"prompt": "x", "n_predict": 100, "stream": True})
    events = sse_events(written.chunks)
    assert written.status == 200 and len(events) == 4
    assert all("error" not in event for event in events[:-1])
    assert events[-1] == {
        "error": {"code": 504, "message": "the job did not finish within 0.3 s", "type": "unavailable_error"}
    }


def test_a_whole_answer_that_times_out_is_a_504(make_stack):
    stack = make_stack(JOB_TIMEOUT="0.3")
    stack.llm.stall_after = 1
    llama_error(stack.post("/completion", {"prompt": "x"}), 504, "unavailable_error")


def test_a_client_that_leaves_mid_stream_cancels_its_generation(stack):
    stack.llm.stall_after = 2
    written = stack.writes("POST", "/completion", {"prompt": "x", "n_predict": 50, "stream": True}, disconnect_after=2)
    assert len(written.chunks) == 2
    eventually(lambda: stack.llm.cancelled, "the generation being cancelled")
    assert stack.llm.cancelled == [Reason.CLIENT_LEFT]


@pytest.mark.parametrize("with_pieces", [False, True])
def test_tokenize_answers_llama_cpps_shape(stack, with_pieces):
    body = {"content": "héllo", "stream": False, "with_pieces": with_pieces}  # LlamaLib adds "stream" everywhere
    response = stack.post("/tokenize", body)
    assert response.status_code == 200
    tokens = response.json["tokens"]
    if with_pieces:
        assert [piece["id"] for piece in tokens] == tokenize("héllo") and all("piece" in piece for piece in tokens)
    else:
        assert tokens == tokenize("héllo")


def test_tokenize_and_detokenize_round_trip(stack):
    tokens = stack.post("/tokenize", {"content": "the dragon, asleep"}).json["tokens"]
    assert stack.post("/detokenize", {"tokens": tokens, "stream": False}).json == {"content": "the dragon, asleep"}


def test_apply_template_renders_the_models_chat_template(stack):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    response = stack.post("/apply-template", {"messages": messages, "stream": False})
    assert response.status_code == 200
    assert response.json == {"prompt": render_chat(messages)}
    assert response.json["prompt"].endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("path", ["/embeddings", "/embedding"])
def test_embeddings_are_an_object_for_v2_and_an_array_for_v3(stack, path):
    # v2 (JsonUtility) cannot read a top-level array; v3 reads result[0].embedding. Only v3 sends "stream".
    v2 = stack.post(path, {"content": "a castle"})
    v3 = stack.post(path, {"content": "a castle", "stream": False})
    assert v2.status_code == v3.status_code == 200
    vector = v2.json["embedding"]
    assert isinstance(v2.json, dict) and set(v2.json) == {"embedding"}
    assert all(isinstance(value, float) for value in vector) and vector
    assert isinstance(v3.json, list) and v3.json[0]["index"] == 0
    assert v3.json[0]["embedding"] == [vector]


def test_embeddings_of_several_inputs_in_order(stack):
    answer = stack.post("/embeddings", {"input": ["a", "b", "a"], "stream": False}).json
    assert [item["index"] for item in answer] == [0, 1, 2]
    assert answer[0]["embedding"] == answer[2]["embedding"] != answer[1]["embedding"]


def test_embeddings_turned_off_are_llama_servers_501(stack):
    stack.llm.embeddings_on = False
    llama_error(stack.post("/embeddings", {"content": "x"}), 501, "not_supported_error")


def test_slots_list_every_slot(stack):
    response = stack.get("/slots")
    assert response.status_code == 200
    assert [slot["id"] for slot in response.json] == list(range(SLOTS))
    assert stack.get("/slots", params={"fail_on_no_slot": "1"}).status_code == 200


def test_slots_with_fail_on_no_slot_is_503_when_every_slot_is_busy(stack):
    stack.llm.hold = hold = Hold()

    async def busy() -> tuple[int, int]:
        generations = [
            asyncio.ensure_future(stack.arequest("POST", "/completion", json={"prompt": "x"})) for _ in range(SLOTS)
        ]
        await arrived(lambda: hold.arrived == SLOTS, "every slot generating")
        answer = await stack.arequest("GET", "/slots", params={"fail_on_no_slot": "1"})
        hold.release()
        done = await asyncio.gather(*generations)
        return answer.status_code, sum(response.status_code == 200 for response in done)

    assert run(busy) == (503, SLOTS)


def test_with_one_model_served_any_model_name_is_that_model(stack):
    # llama-server serves its one model whatever model a request names.
    response = stack.post("/completion", {"prompt": "x", "model": "nope", "n_predict": 1})
    assert response.status_code == 200, response.text
    assert response.json["content"] == STORY[0]


def test_with_several_models_served_a_name_none_serves_is_404(stack):
    stack.llm.also_serves = ("other",)
    error = llama_error(stack.post("/completion", {"prompt": "x", "model": "nope"}), 404, "not_found_error")
    assert "nope" in error["message"] and MODEL in error["message"]
    assert stack.llm.received == []
    assert stack.post("/completion", {"prompt": "x", "model": "other", "n_predict": 1}).status_code == 200


def test_several_prompts_are_answered_as_llama_servers_array(stack):
    response = stack.post("/completion", {"prompt": ["one", [1, 2]], "n_predict": 1})
    assert response.status_code == 200, response.text
    answers = response.json
    assert [(answer["index"], answer["content"]) for answer in answers] == [(0, STORY[0]), (1, STORY[0])]
    assert [answer["tokens_evaluated"] for answer in answers] == [len(tokenize("one")), 2]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "n_predict": "8"}, "n_predict"),
        ({"prompt": "hi", "temperature": "hot"}, "temperature"),
        ({"prompt": "hi", "stream": "yes"}, "stream"),
        ({"prompt": "hi", "stop": "END"}, "stop"),
        ({"prompt": "hi", "top_p": 1.5}, "top_p"),
        ({"prompt": "hi", "n_predict": -5}, "n_predict"),
        ({"prompt": "hi", "mirostat": 3}, "mirostat"),
        ({"prompt": "hi", "json_schema": "{}"}, "json_schema"),
        ({"prompt": [-1, 2]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"n_predict": 8}, "prompt"),
    ],
)
def test_wrong_types_and_values_are_400_naming_the_field(stack, body, field):
    error = llama_error(stack.post("/completion", body), 400, "invalid_request_error")
    assert error["message"].startswith(field)
    assert stack.llm.received == []  # refused before anything was queued


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tokenize", {"content": 5}),
        ("/tokenize", {}),
        ("/detokenize", {"tokens": ["a"]}),
        ("/detokenize", {"tokens": [-3]}),
        ("/apply-template", {"messages": []}),
        ("/apply-template", {"messages": [{"content": "no role"}]}),
        ("/embeddings", {}),
        ("/embeddings", {"content": {"a": 1}}),
        ("/embedding", {"content": 3.5}),
    ],
)
def test_bad_input_on_every_route_is_400(stack, path, body):
    llama_error(stack.post(path, body), 400, "invalid_request_error")


@pytest.mark.parametrize("content", [[104, 105], [[104, 105], "hi"], ["hi", "hi"]])
def test_embeddings_of_token_ids_are_those_of_their_text(stack, content):
    answer = stack.post("/embeddings", {"content": content, "stream": False}).json
    assert all(item["embedding"] == [embedding("hi")] for item in answer)
