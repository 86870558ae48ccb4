"""What an API key is: its name, scopes, models, limits, weight, lifetime and parent.

A key's record never holds its secret, only the secret's HMAC (see secrets.py). The record is kept
in Redis as a flat hash (:meth:`ApiKey.to_hash`) so that the admission script reads the limits it
enforces straight from it, and an operator can read a key with ``redis-cli HGETALL``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .scopes import NOT_MINTABLE, Scope

#: A name shows up in metrics labels and logs: short, and no characters that need quoting.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"
LIMIT_NAMES = ("rpm", "tpm", "parallel", "tokens_per_day", "images_per_day")


class KeyLimits(BaseModel):
    """Every limit is optional: None means unlimited."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1, description="Requests (queued jobs) per minute, a sliding window.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (prompt + generated) per minute.")
    parallel: int | None = Field(default=None, ge=1, description="Jobs queued or running at once.")
    tokens_per_day: int | None = Field(default=None, ge=1, description="Tokens per UTC day.")
    images_per_day: int | None = Field(default=None, ge=1, description="Images per UTC day.")

    def exceeds(self, ceiling: KeyLimits) -> list[str]:
        """The limits set here that are higher than ``ceiling``'s."""
        return [
            name
            for name in LIMIT_NAMES
            if getattr(ceiling, name) is not None
            and getattr(self, name) is not None
            and getattr(self, name) > getattr(ceiling, name)
        ]


class KeySpec(BaseModel):
    """What an admin (or a minting key) asks for when creating a key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    scopes: list[Scope] = Field(min_length=1)
    models: list[str] | None = Field(default=None, description="The models the key may use; None: every model.")
    limits: KeyLimits = Field(default_factory=lambda: KeyLimits())
    weight: int = Field(default=1, ge=1, le=1000, description="Fair-share weight in the queue.")
    expires_in: float | None = Field(default=None, gt=0, description="Seconds until the key stops working.")
    disabled: bool = False

    @field_validator("scopes")
    @classmethod
    def _unique(cls, scopes: list[Scope]) -> list[Scope]:
        return sorted(set(scopes))

    @field_validator("models")
    @classmethod
    def _models(cls, models: list[str] | None) -> list[str] | None:
        if models is not None and any(not name for name in models):
            raise ValueError("a model name cannot be empty")
        return models


class KeyPatch(BaseModel):
    """A change to a key: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    scopes: list[Scope] | None = Field(default=None, min_length=1)
    models: list[str] | None = None
    limits: KeyLimits | None = None
    weight: int | None = Field(default=None, ge=1, le=1000)
    expires_in: float | None = Field(default=None, gt=0)
    disabled: bool | None = None


class ApiKey(BaseModel):
    """A stored key, as the API and the CLI show it (never with its secret)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    scopes: frozenset[Scope]
    models: tuple[str, ...] | None = None
    limits: KeyLimits = Field(default_factory=lambda: KeyLimits())
    weight: int = 1
    expires_at: float | None = None
    disabled: bool = False
    parent: str | None = None
    created_at: float = 0.0

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self) -> dict[str, Any]:
        """The key as the admin API answers it."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "models": list(self.models) if self.models is not None else None,
            "limits": self.limits.model_dump(),
            "weight": self.weight,
            "expires_at": self.expires_at,
            "disabled": self.disabled,
            "parent": self.parent,
            "created_at": self.created_at,
        }

    def to_hash(self) -> dict[str, str]:
        """The record's Redis hash fields. Limits are flat fields (empty: unlimited) for the Lua."""
        fields = {
            "name": self.name,
            "scopes": ",".join(sorted(self.scopes)),
            "models": orjson.dumps(list(self.models)).decode() if self.models is not None else "",
            "weight": str(self.weight),
            "expires_at": repr(self.expires_at) if self.expires_at is not None else "",
            "disabled": "1" if self.disabled else "0",
            "parent": self.parent or "",
            "created_at": repr(self.created_at),
        }
        for name in LIMIT_NAMES:
            value = getattr(self.limits, name)
            fields[name] = str(value) if value is not None else ""
        return fields

    @classmethod
    def from_hash(cls, key_id: str, fields: dict[str, str]) -> ApiKey:
        limits = {name: int(fields[name]) for name in LIMIT_NAMES if fields.get(name)}
        return cls(
            id=key_id,
            name=fields["name"],
            scopes=frozenset(Scope(scope) for scope in fields["scopes"].split(",") if scope),
            models=tuple(orjson.loads(fields["models"])) if fields.get("models") else None,
            limits=KeyLimits(**limits),
            weight=int(fields.get("weight") or 1),
            expires_at=float(fields["expires_at"]) if fields.get("expires_at") else None,
            disabled=fields.get("disabled") == "1",
            parent=fields.get("parent") or None,
            created_at=float(fields.get("created_at") or 0),
        )


class MintRefused(ValueError):
    """A child key asked for more than its parent has. ``str()`` says what."""


def check_within_parent(
    spec: KeySpec, parent: ApiKey, *, max_ttl_s: float, now: float
) -> tuple[float, tuple[str, ...] | None]:
    """Check that ``spec`` fits inside ``parent``; return the child's expiry time and models.

    A child's scopes are a subset of the parent's (never mint or admin), its models a subset of the
    parent's list (none listed: the parent's), each limit it sets at most the parent's (one it
    leaves unset is bounded by the parent's all the same: a child's use counts against both), its
    weight at most the parent's, and it lives at most ``max_ttl_s`` and never past the parent.
    """
    extra_scopes = set(spec.scopes) - set(parent.scopes) if Scope.ADMIN not in parent.scopes else set()
    if extra_scopes | (set(spec.scopes) & NOT_MINTABLE):
        wanted = sorted(extra_scopes | (set(spec.scopes) & NOT_MINTABLE))
        raise MintRefused(f"scopes: a minted key cannot have {', '.join(wanted)}")
    models = tuple(spec.models) if spec.models is not None else parent.models
    if parent.models is not None and models is not None:
        outside = sorted(set(models) - set(parent.models))
        if outside:
            raise MintRefused(f"models: {', '.join(outside)} not among the parent's")
    looser = spec.limits.exceeds(parent.limits)
    if looser:
        raise MintRefused(f"limits: {', '.join(looser)} higher than the parent's")
    if spec.weight > parent.weight:
        raise MintRefused(f"weight: at most the parent's ({parent.weight})")
    lifetime = spec.expires_in if spec.expires_in is not None else max_ttl_s
    if lifetime > max_ttl_s:
        raise MintRefused(f"expires_in: at most {max_ttl_s:g} s (MINT_MAX_TTL)")
    expires_at = now + lifetime
    if parent.expires_at is not None and expires_at > parent.expires_at:
        raise MintRefused("expires_in: a minted key cannot outlive its parent")
    return expires_at, models
