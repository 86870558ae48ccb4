"""Property tests: what the llama.cpp schemas accept, what they forward, what they refuse."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velesio_core.dialects.llamacpp import decode
from velesio_core.dialects.llamacpp.schemas import CompletionRequest, EmbeddingsRequest
from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.validation import parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

valid_options = st.fixed_dictionaries(
    {},
    optional={
        "n_predict": st.integers(-2, 4096),
        "temperature": st.floats(0, 5, allow_nan=False),
        "top_k": st.integers(-1, 200),
        "top_p": st.floats(0, 1),
        "min_p": st.floats(0, 1),
        "seed": st.integers(-1, 2**32),
        "stop": st.lists(st.text(max_size=8), max_size=4),
        "stream": st.booleans(),
        "mirostat": st.sampled_from([0, 1, 2]),
        "json_schema": st.just({"type": "object"}),
        "tfs_z": st.floats(0, 1),
        "penalize_nl": st.booleans(),
        "messages": st.just([]),
        "unknown_future_option": json_values,
    },
)


@given(st.text(max_size=30) | st.lists(st.integers(0, 1000), min_size=1, max_size=5), valid_options)
def test_valid_requests_forward_exactly_what_was_sent_but_stream(prompt, options):
    body = {"prompt": prompt, **options}
    forwarded = decode.forwarded(parse(CompletionRequest, body))
    expected = {key: value for key, value in body.items() if key != "stream" and value is not None}
    assert forwarded.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert math.isclose(forwarded[key], value)
        else:
            assert forwarded[key] == value


@given(json_values)
def test_any_json_body_is_a_request_or_a_400_never_anything_else(body):
    try:
        parse(CompletionRequest, body)
    except GatewayError as error:
        assert error.kind is ErrorKind.INVALID_REQUEST and error.message


@given(st.sampled_from(["n_predict", "top_k", "seed", "mirostat"]), st.text(max_size=5) | st.booleans())
def test_a_string_or_bool_where_a_whole_number_belongs_is_refused(field, value):
    with pytest.raises(GatewayError) as raised:
        parse(CompletionRequest, {"prompt": "hi", field: value})
    assert raised.value.message.startswith(field)


@given(st.sampled_from(["top_p", "min_p", "typical_p"]), st.floats(1.0001, 1e6) | st.floats(-1e6, -0.0001))
def test_probabilities_out_of_range_are_refused(field, value):
    with pytest.raises(GatewayError):
        parse(CompletionRequest, {"prompt": "hi", field: value})


def test_embeddings_need_text():
    with pytest.raises(GatewayError):
        parse(EmbeddingsRequest, {"stream": False})
    assert decode.forwarded(parse(EmbeddingsRequest, {"input": "x"})) == {"input": "x"}
