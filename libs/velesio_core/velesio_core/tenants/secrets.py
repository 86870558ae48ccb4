"""The secret a client holds, and the HMAC that is all Redis ever sees of it.

A secret reads ``vsk_<id>_<random>``: the public id finds the key's record without any index on
secrets, and 256 random bits make it unguessable. Redis stores ``HMAC-SHA256(server secret,
secret)``; the server secret (KEY_SECRET or KEY_SECRET_FILE) lives only in the API's environment,
so a copy of Redis is worth no key. Digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random

PREFIX = "vsk_"
_ID_PATTERN = re.compile(r"^[a-z0-9]{12}$")


def new_key_id() -> str:
    return _random.token_hex(6)


def new_secret(key_id: str) -> str:
    return f"{PREFIX}{key_id}_{_random.token_urlsafe(32)}"


def key_id_of(secret: str) -> str | None:
    """The public id inside a secret, or None when it is not shaped like one of ours."""
    if not secret.startswith(PREFIX):
        return None
    key_id, separator, rest = secret[len(PREFIX) :].partition("_")
    if not separator or not rest or not _ID_PATTERN.match(key_id):
        return None
    return key_id


class ServerSecret:
    """The HMAC key. Its ``repr`` never shows it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the server secret must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "ServerSecret(<hidden>)"

    def digest(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def matches(self, secret: str, digest: str | None) -> bool:
        if not digest:
            return False
        return hmac.compare_digest(self.digest(secret), digest)


def generate_server_secret() -> str:
    return _random.token_urlsafe(48)
