"""The OpenAI and Ollama codecs on their own: decode (a validated request to a job payload in
llama.cpp's vocabulary, jobs.py) and encode (results and events to the dialect's answers),
checked against the dialects' published contracts (CONTRACTS.md 2.4 and 4), not against a run.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct

import pytest

from velesio_core.backends.base import ModelInfo
from velesio_core.dialects.clock import Instant
from velesio_core.dialects.ollama import decode as ollama_decode
from velesio_core.dialects.ollama import encode as ollama_encode
from velesio_core.dialects.ollama import schemas as ollama_schemas
from velesio_core.dialects.openai import decode as openai_decode
from velesio_core.dialects.openai import encode as openai_encode
from velesio_core.dialects.openai import schemas as openai_schemas
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event, EventType
from velesio_core.validation import parse

RESULT = {
    "content": "Hello there",
    "stop": True,
    "stop_type": "limit",
    "tokens_predicted": 2,
    "tokens_evaluated": 7,
    "timings": {"prompt_n": 7, "prompt_ms": 1.5, "predicted_n": 2, "predicted_ms": 4.25},
}
MODEL = ModelInfo(
    id="tiny",
    n_ctx=4096,
    slots=2,
    chat_template="<|im_start|>",
    general_name="velesio-tiny",
    embeddings=True,
    details={
        "architecture": "llama",
        "format": "gguf",
        "quantization": "F32",
        "parameters": 2_500_000,
        "size": 1234,
        "embedding_length": 64,
    },
)


def token(piece: dict) -> Event:
    return Event.of(EventType.TOKEN, piece)


def sse(chunk: bytes):
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
    data = chunk[6:-2]
    return "[DONE]" if data == b"[DONE]" else json.loads(data)


# -- OpenAI: decode ------------------------------------------------------------------------------


def openai_chat(**body) -> openai_schemas.ChatCompletionRequest:
    return parse(
        openai_schemas.ChatCompletionRequest, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **body}
    )


def test_openai_chat_payload_is_llama_servers_chat_body():
    payload = openai_decode.chat_payload(
        openai_chat(
            max_completion_tokens=5, stream=True, user="u", n=1, top_k=3, stream_options={"include_usage": True}
        )
    )
    assert payload == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "top_k": 3}


def test_openai_chat_logprobs_travel_to_llama_server_as_sent():
    # llama-server's /v1/chat/completions takes OpenAI's logprobs and top_logprobs itself.
    payload = openai_decode.chat_payload(openai_chat(logprobs=True, top_logprobs=2))
    assert payload == {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 2}


def test_openai_chat_top_logprobs_without_logprobs_is_400():
    # OpenAI's reference: top_logprobs requires logprobs to be true.
    with pytest.raises(GatewayError) as refused:
        openai_decode.chat_payload(openai_chat(top_logprobs=2))
    assert refused.value.kind is ErrorKind.INVALID_REQUEST


@pytest.mark.parametrize("schema", [openai_schemas.ChatCompletionRequest, openai_schemas.CompletionRequest])
def test_openai_n_choices_are_n_jobs_streamed_or_not(schema):
    body = {"model": "t", "messages": [{"role": "user", "content": "hi"}], "prompt": "x"}
    assert openai_decode.choices(parse(schema, {**body, "n": 3})) == 3
    assert openai_decode.choices(parse(schema, {**body, "n": 2, "stream": True})) == 2
    assert openai_decode.choices(parse(schema, body)) == 1


def test_openai_completion_payloads_are_llama_cpp_completion_bodies_one_per_prompt():
    request = parse(
        openai_schemas.CompletionRequest,
        {"model": "tiny", "prompt": ["Once"], "max_tokens": 4, "stop": "END", "seed": 1},
    )
    assert openai_decode.completion_payloads(request) == [
        {"prompt": "Once", "n_predict": 4, "stop": ["END"], "seed": 1}
    ]
    tokens = parse(openai_schemas.CompletionRequest, {"model": "tiny", "prompt": [1, 2, 3]})
    assert openai_decode.completion_payloads(tokens) == [{"prompt": [1, 2, 3]}]
    texts = parse(openai_schemas.CompletionRequest, {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 1})
    assert openai_decode.completion_payloads(texts) == [
        {"prompt": "a", "n_predict": 1},
        {"prompt": "b", "n_predict": 1},
    ]
    token_lists = parse(openai_schemas.CompletionRequest, {"model": "tiny", "prompt": [[1, 2], [3]]})
    assert openai_decode.completion_payloads(token_lists) == [{"prompt": [1, 2]}, {"prompt": [3]}]


@pytest.mark.parametrize(
    "body",
    [{"echo": True}, {"suffix": "x"}, {"best_of": 2}],
)
def test_openai_completion_options_velesio_cannot_honour_are_501(body):
    with pytest.raises(GatewayError) as refused:
        openai_decode.completion_payloads(
            parse(openai_schemas.CompletionRequest, {"model": "t", "prompt": "x", **body})
        )
    assert refused.value.kind is ErrorKind.NOT_SUPPORTED


def test_openai_completion_logprobs_ask_for_alternatives_as_llama_server_reads_them():
    def payload(**fields):
        (one,) = openai_decode.completion_payloads(
            parse(openai_schemas.CompletionRequest, {"model": "t", "prompt": "x", **fields})
        )
        return one

    assert payload(logprobs=3)["n_probs"] == 3
    assert payload(logprobs=3, n_probs=5)["n_probs"] == 5  # llama.cpp's own field wins
    assert "logprobs" not in payload(logprobs=3) and "n_probs" not in payload()


def test_openai_embeddings_payload():
    request = parse(openai_schemas.EmbeddingsRequest, {"model": "tiny", "input": ["a", "b"], "user": "u"})
    assert openai_decode.embeddings_payload(request) == {"input": ["a", "b"]}
    with pytest.raises(GatewayError):
        openai_decode.embeddings_payload(
            parse(openai_schemas.EmbeddingsRequest, {"model": "t", "input": "a", "dimensions": 8})
        )


# -- OpenAI: encode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_type", "finish"),
    [("eos", "stop"), ("word", "stop"), ("limit", "length"), ("tool_calls", "tool_calls"), (None, "stop")],
)
def test_openai_finish_reason_from_llama_cpps_stop_type(stop_type, finish):
    assert openai_encode.finish_reason({"stop_type": stop_type}) == finish


def test_openai_chat_completion():
    answer = openai_encode.chat_completion(RESULT, id="chatcmpl-1", model="tiny", created=1700000000)
    assert answer == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "tiny",
        "system_fingerprint": openai_encode.FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there"},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        # llama-server's own extra, which it adds to its OpenAI answers too.
        "timings": RESULT["timings"],
    }


def test_openai_usage_counts_the_cached_prompt_tokens_when_the_backend_does():
    cached = {**RESULT, "timings": {**RESULT["timings"], "cache_n": 5}}
    assert openai_encode.usage(cached)["prompt_tokens_details"] == {"cached_tokens": 5}
    assert "prompt_tokens_details" not in openai_encode.usage(RESULT)


def test_openai_chat_completion_with_tool_calls_has_null_content_and_reasoning():
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    result = {**RESULT, "content": "", "stop_type": "tool_calls", "tool_calls": calls, "reasoning_content": "hmm"}
    message = openai_encode.chat_completion(result, id="x", model="m", created=0)["choices"][0]["message"]
    assert message == {"role": "assistant", "content": None, "reasoning_content": "hmm", "tool_calls": calls}
    empty = openai_encode.chat_completion({**RESULT, "content": ""}, id="x", model="m", created=0)
    assert empty["choices"][0]["message"]["content"] == ""


def test_openai_text_completion():
    answer = openai_encode.text_completion(RESULT, id="cmpl-1", model="tiny", created=5)
    assert answer["object"] == "text_completion" and answer["choices"] == [
        {"text": "Hello there", "index": 0, "logprobs": None, "finish_reason": "length"}
    ]
    assert answer["usage"]["total_tokens"] == 9


def test_openai_chat_chunks_role_first_finish_then_done():
    chunks = openai_encode.ChatChunks(id="c", model="tiny", created=1, include_usage=False)
    out = [
        *chunks.encode(Event.of(EventType.STARTED, {})),
        *chunks.encode(token({"content": "He"})),
        *chunks.encode(token({"content": "llo"})),
        *chunks.encode(Event.of(EventType.RESULT, RESULT)),
    ]
    events = [sse(chunk) for chunk in out]
    assert events[-1] == "[DONE]" and len(events) == 5
    # The role comes in a chunk of its own, as llama-server and OpenAI send it.
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert events[1]["choices"][0]["delta"] == {"content": "He"}
    assert events[2]["choices"][0]["delta"] == {"content": "llo"}
    assert events[3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert events[3]["timings"] == RESULT["timings"]
    assert all(event["object"] == "chat.completion.chunk" and event["id"] == "c" for event in events[:-1])


def test_openai_usage_chunk_only_when_asked():
    with_usage = openai_encode.ChatChunks(id="c", model="m", created=1, include_usage=True)
    events = [sse(chunk) for chunk in with_usage.encode(Event.of(EventType.RESULT, RESULT))]
    assert [event["choices"][0]["finish_reason"] for event in events[:2]] == [None, "length"]
    assert events[2] == {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": openai_encode.FINGERPRINT,
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    assert events[3] == "[DONE]"


def test_openai_completion_chunks_carry_text():
    chunks = openai_encode.CompletionChunks(id="c", model="m", created=1, include_usage=False)
    (piece,) = chunks.encode(token({"content": "Hi", "tokens": [5], "stop": False}))
    assert sse(piece)["choices"] == [{"text": "Hi", "index": 0, "logprobs": None, "finish_reason": None}]
    assert sse(piece)["object"] == "text_completion"


def test_openai_a_mid_stream_error_is_an_error_chunk_the_sdks_raise_on():
    chunks = openai_encode.ChatChunks(id="c", model="m", created=1, include_usage=False)
    (chunk,) = chunks.encode(Event.error(GatewayError(ErrorKind.TIMEOUT, "too slow")))
    assert sse(chunk) == {"error": {"message": "too slow", "type": "unavailable_error", "param": None, "code": None}}


def test_openai_error_objects():
    auth = json.loads(openai_encode.error_body(GatewayError(ErrorKind.AUTHENTICATION, "Invalid API Key")))
    assert auth == {
        "error": {
            "message": "Invalid API Key",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    missing = GatewayError(ErrorKind.NOT_FOUND, "no", extra={"param": "model", "code": "model_not_found"})
    assert openai_encode.error_object(missing) == {
        "message": "no",
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_openai_embeddings_floats_and_little_endian_base64():
    result = {"embeddings": [[0.5, -1.0], [0.25, 2.0]], "prompt_tokens": 3}
    floats = openai_encode.embeddings(result, model="tiny", encoding_format=None)
    assert floats == {
        "object": "list",
        "model": "tiny",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]},
        ],
    }
    encoded = openai_encode.embeddings(result, model="tiny", encoding_format="base64")["data"][1]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.25, 2.0)


def test_openai_model_list():
    assert openai_encode.model_list([MODEL], 42) == {
        "object": "list",
        "data": [{"id": "tiny", "object": "model", "created": 42, "owned_by": "velesio"}],
    }


# -- Ollama: decode ------------------------------------------------------------------------------


def ollama_chat(**body) -> ollama_schemas.ChatRequest:
    return parse(ollama_schemas.ChatRequest, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **body})


def test_ollama_options_in_llama_cpps_names():
    options = parse(
        ollama_schemas.Options,
        {
            "num_predict": 8,
            "num_keep": 4,
            "temperature": 0.5,
            "top_k": 3,
            "stop": ["x"],
            "num_ctx": 8192,
            "num_gpu": 1,
            "tfs_z": 1.0,
        },
    )
    assert ollama_decode.sampling(options) == {
        "n_predict": 8,
        "n_keep": 4,
        "temperature": 0.5,
        "top_k": 3,
        "stop": ["x"],
    }
    # num_predict -1 ("forever") is llama.cpp's default, so it is not sent.
    assert ollama_decode.sampling(parse(ollama_schemas.Options, {"num_predict": -1})) == {}
    assert ollama_decode.sampling(None) == {}


def test_ollama_chat_payload():
    payload = ollama_decode.chat_payload(
        ollama_chat(options={"num_predict": 3, "seed": 1}, think=False, tools=[{"type": "function"}])
    )
    assert payload == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3,
        "seed": 1,
        "tools": [{"type": "function"}],
        "chat_template_kwargs": {"enable_thinking": False},
    }
    # think: true turns the template's thinking on, as Ollama does, rather than leaving its default.
    assert ollama_decode.chat_payload(ollama_chat(think=True))["chat_template_kwargs"] == {"enable_thinking": True}
    assert "chat_template_kwargs" not in ollama_decode.chat_payload(ollama_chat())


def test_ollama_tool_calls_in_history_get_json_string_arguments_and_tool_names():
    request = ollama_chat(
        messages=[
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "f", "arguments": {"a": 1}}},
                    {"id": "given", "function": {"name": "g", "arguments": {}}},
                ],
            },
            {"role": "tool", "content": "42", "tool_name": "f"},
        ]
    )
    # OpenAI's tool calls (llama-server's templates) need an id: Ollama's has none, so it is named
    # by its place, and one a client gave is kept.
    assert ollama_decode.chat_payload(request)["messages"] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "id": "call_0", "function": {"name": "f", "arguments": '{"a":1}'}},
                {"type": "function", "id": "given", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "content": "42", "name": "f"},
    ]


@pytest.mark.parametrize(
    ("format", "chat", "expected"),
    [
        ("json", True, {"response_format": {"type": "json_object"}}),
        ("json", False, {"json_schema": {}}),
        ({"type": "object"}, False, {"json_schema": {"type": "object"}}),
        (
            {"type": "object"},
            True,
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "format", "schema": {"type": "object"}},
                }
            },
        ),
    ],
)
def test_ollama_format_in_each_job_kind(format, chat, expected):
    if chat:
        payload = ollama_decode.chat_payload(ollama_chat(format=format))
    else:
        request = parse(ollama_schemas.GenerateRequest, {"model": "t", "prompt": "x", "raw": True, "format": format})
        payload = ollama_decode.completion_payload(request, "x")
    assert {key: payload[key] for key in expected} == expected


def test_ollama_templated_generate_is_a_chat_with_its_system_prompt():
    request = parse(ollama_schemas.GenerateRequest, {"model": "t", "prompt": "Hi", "system": "Be brief."})
    assert ollama_decode.chat_payload(request)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


VISION_MODEL = dataclasses.replace(MODEL, props={"modalities": {"vision": True}})


@pytest.mark.parametrize(
    ("body", "model", "kind"),
    [
        ({"suffix": "y"}, VISION_MODEL, ErrorKind.NOT_SUPPORTED),
        ({"images": ["aGk="], "context": [1]}, VISION_MODEL, ErrorKind.NOT_SUPPORTED),
        # llama-server's refusal of images to a model without a projector, as Ollama's 400.
        ({"images": ["aGk="]}, MODEL, ErrorKind.INVALID_REQUEST),
        ({"think": True}, MODEL, ErrorKind.INVALID_REQUEST),
        ({"think": "low"}, MODEL, ErrorKind.INVALID_REQUEST),
        ({"format": "yaml"}, VISION_MODEL, ErrorKind.INVALID_REQUEST),
    ],
)
def test_ollama_generate_refuses_what_it_cannot_do(body, model, kind):
    request = parse(ollama_schemas.GenerateRequest, {"model": "t", "prompt": "x", **body})
    with pytest.raises(GatewayError) as refused:
        ollama_decode.check(request, model)
    assert refused.value.kind is kind


@pytest.mark.parametrize("body", [{"template": "{{ .Prompt }}"}, {"context": [1]}, {"images": ["aGk="]}])
def test_ollama_generate_takes_a_template_context_and_images_to_a_vision_model(body):
    request = parse(ollama_schemas.GenerateRequest, {"model": "t", "prompt": "x", **body})
    ollama_decode.check(request, VISION_MODEL)  # no refusal


def test_ollama_embed_payload():
    assert ollama_decode.embed_payload(parse(ollama_schemas.EmbedRequest, {"model": "t", "input": "a"})) == {
        "input": "a"
    }
    with pytest.raises(GatewayError):
        ollama_decode.embed_payload(parse(ollama_schemas.EmbedRequest, {"model": "t", "input": "a", "dimensions": 2}))


# -- Ollama: encode ------------------------------------------------------------------------------


def test_ollama_names_carry_the_latest_tag():
    assert ollama_encode.tagged("tiny") == "tiny:latest" and ollama_encode.tagged("qwen:7b") == "qwen:7b"


#: The clock the Ollama encoders are given: half a second passes between the two readings.
STARTED = Instant(wall=1_700_000_000.0, monotonic=100.0)
NOW = Instant(wall=1_700_000_000.5, monotonic=100.5)


def test_ollama_final_chat_object_has_nanosecond_durations():
    answer = ollama_encode.chat_response(RESULT, model="tiny", started=STARTED, now=NOW)
    assert answer["message"] == {"role": "assistant", "content": "Hello there"}
    assert answer["done"] is True and answer["done_reason"] == "length"
    assert answer["prompt_eval_count"] == 7 and answer["eval_count"] == 2
    assert answer["prompt_eval_duration"] == 1_500_000 and answer["eval_duration"] == 4_250_000
    assert answer["total_duration"] == 500_000_000
    assert answer["created_at"] == "2023-11-14T22:13:20.500000Z"


def test_ollama_leaves_zero_counts_out_as_go_does():
    answer = ollama_encode.generate_response({"content": "", "stop_type": "eos"}, model="t", started=STARTED, now=NOW)
    assert answer["done_reason"] == "stop" and answer["response"] == ""
    for key in ("prompt_eval_count", "eval_count", "prompt_eval_duration", "eval_duration"):
        assert key not in answer


def test_ollama_thinking_and_tool_calls_in_a_whole_answer():
    result = {
        **RESULT,
        "reasoning_content": "hmm",
        "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
    }
    message = ollama_encode.chat_response(result, model="t", started=STARTED, now=NOW)["message"]
    assert message["thinking"] == "hmm" and message["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"a": 1}}}
    ]
    assert ollama_encode.generate_response(result, model="t", started=STARTED, now=NOW)["thinking"] == "hmm"


def test_ollama_tool_arguments_that_are_not_json_are_passed_on():
    calls = ollama_encode.tool_calls([{"function": {"name": "f", "arguments": "not json"}}])
    assert calls == [{"function": {"name": "f", "arguments": "not json"}}]


def test_ollama_generate_lines():
    lines = ollama_encode.GenerateLines(model="tiny", started=STARTED, clock=lambda: NOW)
    (piece,) = lines.encode(token({"content": "Hi", "tokens": [1], "stop": False}))
    assert piece.endswith(b"\n") and piece.count(b"\n") == 1
    assert {key: value for key, value in json.loads(piece).items() if key != "created_at"} == {
        "model": "tiny",
        "response": "Hi",
        "done": False,
    }
    (final,) = lines.encode(Event.of(EventType.RESULT, {**RESULT, "content": ""}))
    assert json.loads(final)["response"] == "" and json.loads(final)["done"] is True
    assert lines.encode(Event.of(EventType.STARTED, {})) == []


def test_ollama_chat_lines_merge_tool_call_fragments_into_the_final_line():
    lines = ollama_encode.ChatLines(model="tiny", started=STARTED, clock=lambda: NOW)
    fragments = [
        {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]
    assert [lines.encode(token(fragment)) for fragment in fragments] == [[], [], []]
    (final,) = lines.encode(Event.of(EventType.RESULT, {**RESULT, "stop_type": "tool_calls"}))
    message = json.loads(final)["message"]
    assert message == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}],
    }


def test_ollama_a_mid_stream_error_is_one_more_line():
    for lines in (
        ollama_encode.ChatLines(model="t", started=STARTED, clock=lambda: NOW),
        ollama_encode.GenerateLines(model="t", started=STARTED, clock=lambda: NOW),
    ):
        (line,) = lines.encode(Event.error(GatewayError(ErrorKind.TIMEOUT, "too slow")))
        assert json.loads(line) == {"error": "too slow"}
    assert json.loads(ollama_encode.error_body(GatewayError(ErrorKind.NOT_FOUND, "gone"))) == {"error": "gone"}


def test_ollama_model_lists_and_show():
    (entry,) = ollama_encode.tags([MODEL])["models"]
    assert entry == {
        "name": "tiny:latest",
        "model": "tiny:latest",
        "size": 1234,
        "details": {
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "2.5M",
            "quantization_level": "F32",
        },
    }
    assert ollama_encode.running([MODEL])["models"][0]["context_length"] == 4096
    shown = ollama_encode.show(MODEL)
    assert shown["template"] == "<|im_start|>" and shown["capabilities"] == ["completion", "embedding"]
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 4096 and shown["model_info"]["llama.embedding_length"] == 64


def test_ollama_embeddings():
    result = {"embeddings": [[0.5, 1.0]], "prompt_tokens": 2}
    answer = ollama_encode.embed_response(result, model="t", started=STARTED, now=NOW)
    assert answer["embeddings"] == [[0.5, 1.0]] and answer["prompt_eval_count"] == 2
    assert answer["total_duration"] == 500_000_000
    assert ollama_encode.legacy_embedding(result) == {"embedding": [0.5, 1.0]}
    assert ollama_encode.legacy_embedding({"embeddings": []}) == {"embedding": []}
