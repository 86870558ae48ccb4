"""The tenant settings, read from the environment like the rest (see settings.py).

KEY_SECRET (or KEY_SECRET_FILE, a file holding it) turns stored keys on; without it only
API_TOKENS work, as before. ``make up`` generates one into its run directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..settings import SettingsError, _Reader
from .secrets import ServerSecret


@dataclass(frozen=True)
class TenantSettings:
    server_secret: ServerSecret | None
    #: The longest a minted (child) key may live, in seconds.
    mint_max_ttl_s: float
    #: A concurrency lease expires this long after its last renewal: how long the slot of a job
    #: whose API process died stays taken.
    lease_ttl_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TenantSettings:
        env = os.environ if env is None else env
        read = _Reader(env)
        return cls(
            server_secret=_server_secret(env),
            mint_max_ttl_s=read.seconds("MINT_MAX_TTL", 24 * 3600.0),
            lease_ttl_s=read.seconds("KEY_LEASE_TTL", 30.0),
        )


def _server_secret(env: Mapping[str, str]) -> ServerSecret | None:
    value = (env.get("KEY_SECRET") or "").strip()
    path = (env.get("KEY_SECRET_FILE") or "").strip()
    if not value and path:
        try:
            value = Path(path).read_text().strip()
        except OSError as error:
            raise SettingsError("KEY_SECRET_FILE", f"cannot be read ({error.strerror})", "point it at a file") from None
    if not value:
        return None
    if len(value) < 32:
        raise SettingsError("KEY_SECRET", "is shorter than 32 characters", "use e.g. `openssl rand -base64 48`")
    return ServerSecret(value.encode())
