"""Every Redis key the tenants use, named in one place (velesio's namespace, see queue/keys.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: A set of the ids of top-level keys (minted keys are listed under their parent).
INDEX = "velesio:keys"
#: The audit trail of admin actions: a stream capped at about AUDIT_MAX_LEN entries.
AUDIT_STREAM = "velesio:keys:audit"
AUDIT_MAX_LEN = 10_000


def string(value: Any) -> str:
    """A Redis reply's bytes as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text(fields: Mapping[Any, Any]) -> dict[str, str]:
    """A hash (or stream entry) as Redis returns it, as text."""
    return {string(key): string(value) for key, value in fields.items()}


@dataclass(frozen=True)
class KeyKeys:
    key_id: str

    @property
    def record(self) -> str:
        return f"velesio:key:{self.key_id}"

    @property
    def children(self) -> str:
        """The keys this one minted: a sorted set of child id -> expiry (unix seconds)."""
        return f"velesio:key:{self.key_id}:children"

    @property
    def requests(self) -> str:
        return f"velesio:key:{self.key_id}:requests"

    @property
    def leases(self) -> str:
        return f"velesio:key:{self.key_id}:leases"

    @property
    def tokens(self) -> str:
        return f"velesio:key:{self.key_id}:tokens"

    @property
    def daily(self) -> str:
        return f"velesio:key:{self.key_id}:daily"

    def admission(self) -> list[str]:
        """The five keys admit.lua reads per key, in its order."""
        return [self.record, self.requests, self.leases, self.tokens, self.daily]

    def usage(self) -> list[str]:
        """The three keys release.lua writes per key, in its order."""
        return [self.leases, self.tokens, self.daily]

    def all(self) -> list[str]:
        return [self.record, self.children, self.requests, self.leases, self.tokens, self.daily]
