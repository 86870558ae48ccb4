"""The admin surface for API keys: /admin/keys, and /admin/audit.

API_TOKENS and keys with the ``admin`` scope manage every key. A key with the ``mint`` scope
creates child keys within its own scopes, models, limits and lifetime (MINT_MAX_TTL at most), and
lists, reads and revokes those children, nothing else: that is what a game studio's backend holds
to give each player session a key of its own.
"""

from __future__ import annotations

import falcon
import falcon.asgi
from pydantic import BaseModel, ConfigDict, Field

from velesio_core.errors import ErrorKind, GatewayError
from velesio_core.tenants import audit
from velesio_core.tenants.authn import Principal
from velesio_core.tenants.config import TenantSettings
from velesio_core.tenants.model import ApiKey, KeyPatch, KeySpec, MintRefused
from velesio_core.tenants.scopes import Scope
from velesio_core.tenants.store import KeyStore
from velesio_core.validation import parse

from ..relay import Relay, send_json
from ..routing import Routes
from ..tenancy import tenancy_of
from . import llamacpp


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_s: float = Field(default=60.0, ge=0, le=30 * 86400, description="How long the old secret keeps working.")


def _forbidden(message: str) -> GatewayError:
    return GatewayError(ErrorKind.PERMISSION, message)


def _not_found(key_id: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, f"no key has the id {key_id!r}")


class _Admin:
    def __init__(self, relay: Relay, store: KeyStore | None, settings: TenantSettings) -> None:
        self._relay = relay
        self._store = store
        self._settings = settings

    def store(self) -> KeyStore:
        if self._store is None:
            # A 404, not a 5xx: nothing is broken, this server keeps no keys (clients retry 5xx).
            raise GatewayError(
                ErrorKind.NOT_FOUND, "stored API keys are off: set KEY_SECRET (or KEY_SECRET_FILE) on the API"
            )
        return self._store

    @staticmethod
    def caller(req: falcon.asgi.Request, *, mint: bool = False) -> Principal:
        principal = tenancy_of(req).principal
        if principal.is_admin or (mint and principal.allows(Scope.MINT)):
            return principal
        raise _forbidden("this API key's scopes do not include 'admin'" + (" or 'mint'" if mint else ""))

    async def visible(self, principal: Principal, key_id: str) -> ApiKey:
        """The key, if the caller may see it: an admin every key, a minting key its children."""
        key = await self.store().get(key_id)
        if key is None or not (principal.is_admin or (principal.key and key.parent == principal.key.id)):
            raise _not_found(key_id)
        return key


class Keys(_Admin):
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        principal = self.caller(req, mint=True)
        spec = parse(KeySpec, await self._relay.read_json(req))
        parent = None if principal.is_admin else principal.key
        try:
            key, secret = await self.store().create(
                spec, actor=principal.actor, parent=parent, mint_max_ttl_s=self._settings.mint_max_ttl_s
            )
        except MintRefused as refused:
            raise _forbidden(f"a minted key must fit inside its parent: {refused}") from None
        send_json(resp, {**key.public(), "key": secret}, status=201)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        principal = self.caller(req, mint=True)
        parent = req.get_param("parent")
        if not principal.is_admin:
            parent = principal.key.id  # type: ignore[union-attr]
        keys = await self.store().list(parent)
        send_json(resp, {"keys": [key.public() for key in keys]})


class Key(_Admin):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key_id: str) -> None:
        key = await self.visible(self.caller(req, mint=True), key_id)
        send_json(resp, {**key.public(), "usage": await self.store().usage(key_id)})

    async def on_patch(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key_id: str) -> None:
        principal = self.caller(req)
        patch = parse(KeyPatch, await self._relay.read_json(req))
        key = await self.store().update(key_id, patch, actor=principal.actor)
        if key is None:
            raise _not_found(key_id)
        send_json(resp, key.public())

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key_id: str) -> None:
        principal = self.caller(req, mint=True)
        await self.visible(principal, key_id)
        key = await self.store().delete(key_id, actor=principal.actor)
        if key is None:
            raise _not_found(key_id)
        send_json(resp, {"id": key_id, "revoked": True})


class Rotate(_Admin):
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key_id: str) -> None:
        principal = self.caller(req)
        body = await self._relay.read_json(req) if req.content_length else {}
        request = parse(RotateRequest, body)
        secret = await self.store().rotate(key_id, grace_s=request.grace_s, actor=principal.actor)
        if secret is None:
            raise _not_found(key_id)
        send_json(resp, {"id": key_id, "key": secret, "old_key_valid_for_s": request.grace_s})


class Audit(_Admin):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.caller(req)
        count = req.get_param_as_int("count", min_value=1, max_value=1000) or 100
        send_json(resp, {"entries": await audit.recent(self.store().redis, count)})


def add_routes(routes: Routes, relay: Relay, store: KeyStore | None, settings: TenantSettings) -> None:
    # velesio's own API, answered (and its errors shaped) as llama.cpp's native one, whose paths
    # are the root's.
    api = routes.speaking(llamacpp.DIALECT, under="/admin/")
    common = (relay, store, settings)
    api.add("/admin/keys", Keys(*common))
    api.add("/admin/keys/{key_id}", Key(*common))
    api.add("/admin/keys/{key_id}/rotate", Rotate(*common))
    api.add("/admin/audit", Audit(*common))
