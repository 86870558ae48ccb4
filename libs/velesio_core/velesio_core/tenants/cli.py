"""``velesio-keys``: manage API keys against Redis directly (the admin API's twin, for operators).

It reads REDIS_URL (or the Sentinel settings) and KEY_SECRET (or KEY_SECRET_FILE) like the API, prints JSON, and audits
every change as ``cli:<user>``. A new secret is printed once and never stored.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import orjson
from pydantic import ValidationError

from ..redis_clients import async_client
from ..settings import Settings, SettingsError, exit_with, load_or_exit
from ..validation import describe
from . import audit
from .config import TenantSettings
from .model import KeyLimits, KeySpec
from .store import KeyStore


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velesio-keys", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print its secret, once")
    create.add_argument("name")
    create.add_argument("--scopes", required=True, help="comma-separated: llm,embeddings,images,metrics,mint,admin")
    create.add_argument("--models", help="comma-separated model names the key may use (default: every model)")
    for limit in ("rpm", "tpm", "parallel", "tokens-per-day", "images-per-day"):
        create.add_argument(f"--{limit}", type=int)
    create.add_argument("--weight", type=int, default=1)
    create.add_argument("--expires-in", type=float, help="seconds until the key stops working")
    listing = commands.add_parser("list", help="the top-level keys, or the keys one minted")
    listing.add_argument("--parent")
    commands.add_parser("show", help="a key and its usage now").add_argument("id")
    commands.add_parser("revoke", help="revoke a key and every key it minted").add_argument("id")
    rotate = commands.add_parser("rotate", help="a new secret; the old one works for --grace seconds")
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=float, default=60.0)
    commands.add_parser("audit", help="recent admin actions").add_argument("--count", type=int, default=50)
    return parser


async def _run(args: argparse.Namespace, store: KeyStore, actor: str) -> int:
    if args.command == "create":
        limits = KeyLimits(
            rpm=args.rpm, tpm=args.tpm, parallel=args.parallel,
            tokens_per_day=args.tokens_per_day, images_per_day=args.images_per_day,
        )  # fmt: skip
        spec = KeySpec(
            name=args.name,
            scopes=[scope.strip() for scope in args.scopes.split(",") if scope.strip()],
            models=[model.strip() for model in args.models.split(",")] if args.models else None,
            limits=limits,
            weight=args.weight,
            expires_in=args.expires_in,
        )
        created, secret = await store.create(spec, actor=actor)
        _print({**created.public(), "key": secret})
    elif args.command == "list":
        _print([key.public() for key in await store.list(args.parent)])
    elif args.command == "show":
        key = await store.get(args.id)
        if key is None:
            print(f"velesio-keys: no key has the id {args.id!r}", file=sys.stderr)
            return 1
        _print({**key.public(), "usage": await store.usage(args.id)})
    elif args.command == "revoke":
        if await store.delete(args.id, actor=actor) is None:
            print(f"velesio-keys: no key has the id {args.id!r}", file=sys.stderr)
            return 1
        _print({"id": args.id, "revoked": True})
    elif args.command == "rotate":
        rotated = await store.rotate(args.id, grace_s=args.grace, actor=actor)
        if rotated is None:
            print(f"velesio-keys: no key has the id {args.id!r}", file=sys.stderr)
            return 1
        _print({"id": args.id, "key": rotated, "old_key_valid_for_s": args.grace})
    elif args.command == "audit":
        _print(await audit.recent(store.redis, args.count))
    return 0


async def _main(args: argparse.Namespace, settings: Settings, tenants: TenantSettings) -> int:
    assert tenants.server_secret is not None
    client = async_client(settings)
    try:
        return await _run(args, KeyStore(client, tenants.server_secret), f"cli:{getpass.getuser()}")
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = load_or_exit()
    try:
        tenants = TenantSettings.from_env()
    except SettingsError as error:
        exit_with(error)
    if tenants.server_secret is None:
        exit_with(SettingsError("KEY_SECRET", "is not set", "set KEY_SECRET or KEY_SECRET_FILE as the API has it"))
    try:
        raise SystemExit(asyncio.run(_main(args, settings, tenants)))
    except ValidationError as error:
        print(f"velesio-keys: {describe(error)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
