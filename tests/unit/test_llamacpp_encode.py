from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.support.llmunity import v2_parse_cumulative, v3_concatenate
from velesio_core.dialects.llamacpp import encode
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.events import Event, EventType

pieces = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12).filter(
    lambda text: "data: " not in text  # the one string LLM for Unity v2's split cannot survive
)


@given(st.lists(pieces, min_size=1, max_size=20))
def test_any_stream_parses_in_both_llm_for_unity_clients(contents):
    chunks = [
        encode.sse_event(Event(EventType.TOKEN, orjson.dumps({"content": c, "tokens": [i], "stop": False})))
        for i, c in enumerate(contents)
    ]
    chunks.append(encode.sse_event(Event(EventType.RESULT, orjson.dumps({"content": "", "tokens": [], "stop": True}))))
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1
    body = b"".join(chunks).decode()
    assert v2_parse_cumulative(body) == "".join(contents).strip()
    content, tokens, last = v3_concatenate(chunks)
    assert content == "".join(contents) and tokens == list(range(len(contents))) and last["stop"] is True


@given(st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8), max_size=5))
def test_token_events_travel_byte_for_byte(chunk):
    data = orjson.dumps(chunk)
    assert encode.sse_event(Event(EventType.TOKEN, data)) == b"data: " + data + b"\n\n"


def test_events_clients_never_see_are_not_sent():
    assert encode.sse_event(Event.of(EventType.STARTED, {"worker": "w"})) is None
    assert encode.sse_event(Event.of(EventType.QUEUED, {})) is None


def test_a_mid_stream_error_is_llama_cpps_error_event():
    error = GatewayError(ErrorKind.UNAVAILABLE, "gone")
    chunk = encode.sse_event(Event.error(error))
    expected = {"error": {"code": 503, "message": "gone", "type": "unavailable_error"}}
    assert json.loads(chunk[len(b"data: ") :]) == expected


@given(st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8), min_size=1,
                max_size=4))  # fmt: skip
def test_embeddings_object_for_v2_and_llama_cpps_array_for_v3(vectors):
    result = {"embeddings": vectors, "prompt_tokens": 3}
    assert encode.embeddings(result, llmunity_v2=False) == [
        {"index": index, "embedding": [vector]} for index, vector in enumerate(vectors)
    ]
    assert encode.embeddings(result, llmunity_v2=True) == {"embedding": vectors[0]}


@given(st.sampled_from(list(ErrorKind)), st.text(min_size=1, max_size=40))
def test_errors_keep_status_type_and_message_through_an_event(kind, message):
    error = GatewayError(kind, message)
    again = Event.error(error).as_error()
    assert (again.status, again.kind.type_name, again.message) == (error.status, kind.type_name, message)
    body = json.loads(encode.error_body(error))
    assert body == {"error": {"code": kind.status, "message": message, "type": kind.type_name}}
