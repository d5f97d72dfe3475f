"""Identity administration at the built-in authorization server: dev-token, add-account,
list-accounts, set-password, add-client, list-clients, rotate-key, list-keys, retire-key."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..config import get_settings
from .common import migrate_database, read_password, refuse_external, registration, with_engine


def cmd_dev_token(args: argparse.Namespace) -> int:
    refused = refuse_external("dev-token")
    if refused is not None:
        return refused
    from ..access.issuer import mint_dev_token
    from ..access.principal import FHIR_USER_RE, ORGANIZATION_RE, known_roles
    from ..access.scopes import parse_scopes

    if args.fhir_user and not FHIR_USER_RE.match(args.fhir_user):
        print("pgo-work dev-token: --fhir-user must look like Practitioner/123", file=sys.stderr)
        return 2
    if args.role and args.role not in known_roles():
        print(f"pgo-work dev-token: --role must be one of {', '.join(known_roles())}", file=sys.stderr)
        return 2
    if args.organization and not ORGANIZATION_RE.match(args.organization):
        print("pgo-work dev-token: --organization must look like Organization/123", file=sys.stderr)
        return 2
    scopes = parse_scopes(args.scope)
    if scopes.unknown or not scopes.resources:
        print(f"pgo-work dev-token: not SMART resource scopes: {' '.join(scopes.unknown) or args.scope}",
              file=sys.stderr)
        return 2
    migrate_database()
    token = asyncio.run(mint_dev_token(get_settings(), scope=args.scope, fhir_user=args.fhir_user,
                                       patient=args.patient, role=args.role, minutes=args.minutes,
                                       purpose=args.purpose, organization=args.organization))
    print(token)
    return 0


def cmd_add_account(args: argparse.Namespace) -> int:
    refused = refuse_external("add-account")
    if refused is not None:
        return refused
    from ..access.accounts import add_account
    from ..access.db import transaction

    password = read_password(args, f"password for {args.username}: ")

    async def create(engine: Any) -> str:
        async with transaction(engine, write=True) as conn:
            return (await add_account(conn, args.username, password, args.fhir_user, args.role)).subject

    done, subject = registration("add-account", create)
    if not done:
        return 2
    print(f"account {args.username} created (sub {subject})")
    return 0


def cmd_add_client(args: argparse.Namespace) -> int:
    refused = refuse_external("add-client")
    if refused is not None:
        return refused
    from ..access.accounts import add_client
    from ..access.db import transaction

    try:
        jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
    except (OSError, ValueError) as exc:
        print(f"pgo-work add-client: cannot read the JWKS: {exc}", file=sys.stderr)
        return 2

    async def create(engine: Any) -> None:
        async with transaction(engine, write=True) as conn:
            await add_client(conn, args.client_id, name=args.name or "", kind=args.kind,
                             redirect_uris=args.redirect_uri, jwks=jwks, scope=args.scope,
                             role=args.role, fhir_user=args.fhir_user)

    if not registration("add-client", create)[0]:
        return 2
    print(f"client {args.client_id} registered ({args.kind})")
    return 0


def cmd_list_accounts(_: argparse.Namespace) -> int:
    from ..access.accounts import list_accounts
    from ..access.db import transaction

    async def listing(engine: Any) -> list[Any]:
        async with transaction(engine) as conn:
            return await list_accounts(conn)

    for a in with_engine(listing):
        print(f"{a.username}  {a.fhir_user}  {a.role}" + ("  disabled" if a.disabled else ""))
    return 0


def cmd_list_clients(_: argparse.Namespace) -> int:
    from ..access.accounts import list_clients
    from ..access.db import transaction

    async def listing(engine: Any) -> list[Any]:
        async with transaction(engine) as conn:
            return await list_clients(conn)

    for c in with_engine(listing):
        where = " ".join(c.redirect_uris) or "-"
        print(f"{c.client_id}  {c.kind}  scope={c.scope or '-'}  redirect={where}"
              + ("  disabled" if c.disabled else ""))
    return 0


def cmd_set_password(args: argparse.Namespace) -> int:
    refused = refuse_external("set-password")
    if refused is not None:
        return refused
    from ..access.accounts import set_password
    from ..access.db import transaction

    password = read_password(args, f"new password for {args.username}: ")

    async def change(engine: Any) -> None:
        async with transaction(engine, write=True) as conn:
            await set_password(conn, args.username, password)

    if not registration("set-password", change)[0]:
        return 2
    print(f"password of {args.username} changed")
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    refused = refuse_external("rotate-key")
    if refused is not None:
        return refused
    from ..access.db import transaction
    from ..access.keys import add_key

    async def rotate(engine: Any) -> str:
        async with transaction(engine, write=True) as conn:
            return await add_key(conn, args.alg)

    kid = with_engine(rotate)
    print(f"signing key {kid} ({args.alg}) added; it signs from now on. Retire the previous key "
          "once the tokens it signed have expired: pgo-work retire-key KID")
    return 0


def cmd_list_keys(_: argparse.Namespace) -> int:
    from ..access.db import transaction
    from ..access.keys import list_keys

    async def listing(engine: Any) -> list[dict[str, Any]]:
        async with transaction(engine) as conn:
            return await list_keys(conn)

    for key in with_engine(listing):
        state = f"retired {key['retired_at']:%Y-%m-%d %H:%M}" if key["retired_at"] else "active"
        print(f"{key['kid']}  {key['alg']}  created {key['created_at']:%Y-%m-%d %H:%M}  {state}")
    return 0


def cmd_retire_key(args: argparse.Namespace) -> int:
    refused = refuse_external("retire-key")
    if refused is not None:
        return refused
    from ..access.db import transaction
    from ..access.keys import retire_key

    async def retire(engine: Any) -> bool:
        async with transaction(engine, write=True) as conn:
            return await retire_key(conn, args.kid)

    if not with_engine(retire):
        print(f"pgo-work retire-key: no active key {args.kid}", file=sys.stderr)
        return 2
    print(f"signing key {args.kid} retired; tokens it signed are no longer accepted")
    return 0


def add_identity_commands(sub: Any) -> None:
    dev = sub.add_parser("dev-token", help="print an access token signed by the built-in issuer")
    dev.add_argument("--fhir-user", help="the user's own resource, e.g. Practitioner/123")
    dev.add_argument("--scope", required=True, help='SMART scopes, e.g. "user/*.rs"')
    dev.add_argument("--patient", help="launch context: the Patient id the token is bound to")
    dev.add_argument("--role", help="role claim, e.g. occupational-physician")
    dev.add_argument("--minutes", type=int, default=60, help="lifetime (default 60)")
    dev.add_argument("--purpose", action="append",
                     help="purpose_of_use claim: a v3-ActReason code or system|code (repeatable); "
                          "without it the role's default purpose applies")
    dev.add_argument("--organization",
                     help="organization claim of an organization-admin, e.g. Organization/arbodienst")
    dev.set_defaults(fn=cmd_dev_token)

    acc = sub.add_parser("add-account", help="create a login account at the built-in server")
    acc.add_argument("username")
    acc.add_argument("--fhir-user", required=True, help="Patient/..., Practitioner/..., ...")
    acc.add_argument("--role", required=True, help="patient, occupational-physician, ...")
    acc.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of prompting")
    acc.set_defaults(fn=cmd_add_account)

    sub.add_parser("list-accounts", help="the built-in server's login accounts").set_defaults(
        fn=cmd_list_accounts)
    pw = sub.add_parser("set-password", help="change a login account's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the new password from standard input instead of prompting")
    pw.set_defaults(fn=cmd_set_password)

    cli = sub.add_parser("add-client", help="register an application at the built-in server")
    cli.add_argument("client_id")
    cli.add_argument("--kind", choices=["public", "backend"], default="public",
                     help="public: PGO/SMART app with PKCE; backend: private_key_jwt")
    cli.add_argument("--name")
    cli.add_argument("--redirect-uri", action="append", default=[], help="repeatable")
    cli.add_argument("--jwks", help="file with the client's public JWKS (backend clients)")
    cli.add_argument("--scope", default="", help="the most this client may be granted")
    cli.add_argument("--role", help="role claim of its client_credentials tokens")
    cli.add_argument("--fhir-user", help="fhirUser claim of its client_credentials tokens")
    cli.set_defaults(fn=cmd_add_client)

    sub.add_parser("list-clients", help="the applications registered at the built-in server") \
        .set_defaults(fn=cmd_list_clients)

    rot = sub.add_parser("rotate-key", help="add a new signing key (it signs from now on)")
    rot.add_argument("--alg", choices=["RS256", "ES256"], default="RS256")
    rot.set_defaults(fn=cmd_rotate_key)
    sub.add_parser("list-keys", help="the built-in issuer's signing keys").set_defaults(fn=cmd_list_keys)
    ret = sub.add_parser("retire-key", help="stop accepting tokens signed with a key")
    ret.add_argument("kid")
    ret.set_defaults(fn=cmd_retire_key)
