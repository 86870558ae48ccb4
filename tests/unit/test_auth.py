from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velesio_core.auth import TokenSet, credential_from_headers


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer  abc ", None, "abc"),
        ("abc", None, "abc"),
        (None, "abc", "abc"),
        ("Basic " + base64.b64encode(b"user:abc").decode(), None, "abc"),
        ("Basic " + base64.b64encode(b"user:").decode(), None, None),
        ("Basic not-base64!", None, None),
        ("Bearer ", None, None),
        (None, None, None),
    ],
)
def test_credential_from_every_header_form(authorization, x_api_key, expected):
    assert credential_from_headers(authorization, x_api_key) == expected


def test_token_set_accepts_exactly_its_tokens():
    tokens = TokenSet(["alpha", "beta"])
    assert tokens.accepts("alpha") and tokens.accepts("beta")
    assert not tokens.accepts("alph") and not tokens.accepts("alphaa") and not tokens.accepts("")
    assert not tokens.accepts(None)
    assert not TokenSet([]).accepts("anything")


def test_a_token_set_does_not_show_its_tokens():
    assert "alpha" not in repr(TokenSet(["alpha"]))


@given(st.lists(st.text(min_size=1), min_size=1), st.text())
def test_acceptance_is_membership(tokens, candidate):
    assert TokenSet(tokens).accepts(candidate) == (candidate in tokens)
