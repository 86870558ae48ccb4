"""Who may call velesio: API tokens and the headers clients put them in.

Clients send a token as ``Authorization: Bearer <token>`` (LLM for Unity, llama.cpp and OpenAI
clients), as a bare ``Authorization: <token>`` or ``X-Api-Key: <token>`` (llama.cpp accepts both),
or as the password of HTTP Basic auth (AUTOMATIC1111 clients, which cannot send Bearer).

Tokens are compared in constant time over their SHA-256 digests, so neither the content nor the
length of a token leaks through timing, and no function here ever formats a token into a string.
Which paths need no token is declared with the API's routes (services/api: routing.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenSet:
    """The accepted API tokens. Holds only their digests."""

    __slots__ = ("_digests",)

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(_digest(token) for token in tokens if token)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __repr__(self) -> str:
        return f"TokenSet(<{len(self._digests)} tokens>)"

    def accepts(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        presented = _digest(candidate)
        # Compare against every token, so the time taken does not say which one matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched


def credential_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The token a request presents, from whichever header the client's dialect uses."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        scheme_lower = scheme.lower()
        if scheme_lower == "bearer":
            return value.strip() or None
        if scheme_lower == "basic":
            return _basic_password(value.strip())
        if not value:
            # llama.cpp takes an Authorization header without a scheme as the key itself.
            return scheme
    if x_api_key:
        return x_api_key.strip() or None
    return None


def _basic_password(encoded: str) -> str | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, separator, password = decoded.partition(":")
    return password if separator and password else None
