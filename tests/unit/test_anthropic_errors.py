"""Anthropic's error shape: every kind of error velesio can raise has a status and a type there."""

from __future__ import annotations

import pytest

from velesio_core.dialects.anthropic.encode import error_status
from velesio_core.errors import ErrorKind, GatewayError


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: kind.name)
def test_every_error_kind_has_an_anthropic_status(kind: ErrorKind) -> None:
    status = error_status(GatewayError(kind, "x"))
    assert 400 <= status < 600
    # A client mistake stays a client error in Anthropic's shape too (a 5xx makes SDKs retry).
    if kind.status < 500:
        assert status < 500
