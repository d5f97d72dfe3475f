"""The `pgo-work` command: serve, migrate, seed-demo, and identity administration (dev-token,
add-account, list-accounts, set-password, add-client, list-clients, rotate-key, list-keys,
retire-key)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .config import get_settings

T = TypeVar("T")


class DatabaseUnusable(Exception):
    """The configured database cannot be opened; the message says why, in one line."""


def _check_sqlite_folder(url: str) -> None:
    """An SQLite file in a folder that does not exist: say so before a driver thread fails
    noisily at interpreter exit."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(str(parsed.database)).parent
        if not folder.is_dir():
            raise DatabaseUnusable(f"the folder {folder} does not exist")


def _migrate() -> None:
    from .store.migrate import upgrade

    url = get_settings().resolved_database_url()
    _check_sqlite_folder(url)
    upgrade(url)


def cmd_migrate(_: argparse.Namespace) -> int:
    _migrate()
    print("database is at the newest schema")
    return 0


def cmd_seed_demo(_: argparse.Namespace) -> int:
    from .demo.loader import seed
    from .runtime import build_runtime

    _migrate()

    async def run() -> dict[str, int]:
        from .conformance.publish import publish

        rt = build_runtime(get_settings())
        try:
            await publish(rt)  # the Questionnaires and profiles demo data refers to
            return await seed(rt)
        finally:
            await rt.close()

    counts = asyncio.run(run())
    print("demo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if not get_settings().oidc_issuer:
        from .access.demo import DEMO_PASSWORD, seed_identities

        created = _with_engine(lambda engine: seed_identities(engine, get_settings()))
        for line in created:
            print(f"demo identity: {line}")
        print(f"demo accounts log in with the password {DEMO_PASSWORD!r}")
    return 0


def _with_engine(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(engine)` on the configured database (migrated first)."""
    from .store.database import create_engine

    _migrate()

    async def run() -> T:
        engine = create_engine(get_settings().resolved_database_url())
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _refuse_external(command: str) -> int | None:
    issuer = get_settings().oidc_issuer
    if issuer:
        print(f"pgo-work {command}: PGO_WORK_OIDC_ISSUER is set ({issuer}); this server only accepts "
              "tokens from that issuer, so the built-in issuer's tokens, accounts and clients "
              "would not work. Unset it to use the built-in authorization server.", file=sys.stderr)
        return 2
    return None


def cmd_dev_token(args: argparse.Namespace) -> int:
    refused = _refuse_external("dev-token")
    if refused is not None:
        return refused
    from .access.issuer import mint_dev_token
    from .access.principal import FHIR_USER_RE, ORGANIZATION_RE, known_roles
    from .access.scopes import parse_scopes

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
    _migrate()
    token = asyncio.run(mint_dev_token(get_settings(), scope=args.scope, fhir_user=args.fhir_user,
                                       patient=args.patient, role=args.role, minutes=args.minutes,
                                       purpose=args.purpose, organization=args.organization))
    print(token)
    return 0


def cmd_add_account(args: argparse.Namespace) -> int:
    refused = _refuse_external("add-account")
    if refused is not None:
        return refused
    from .access.accounts import RegistrationError, add_account
    from .access.db import transaction

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")

    async def create(engine: Any) -> str:
        async with transaction(engine, write=True) as conn:
            return (await add_account(conn, args.username, password, args.fhir_user, args.role)).subject

    try:
        subject = _with_engine(create)
    except RegistrationError as exc:
        print(f"pgo-work add-account: {exc}", file=sys.stderr)
        return 2
    print(f"account {args.username} created (sub {subject})")
    return 0


def cmd_add_client(args: argparse.Namespace) -> int:
    refused = _refuse_external("add-client")
    if refused is not None:
        return refused
    from .access.accounts import RegistrationError, add_client
    from .access.db import transaction

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

    try:
        _with_engine(create)
    except RegistrationError as exc:
        print(f"pgo-work add-client: {exc}", file=sys.stderr)
        return 2
    print(f"client {args.client_id} registered ({args.kind})")
    return 0


def cmd_list_accounts(_: argparse.Namespace) -> int:
    from .access.accounts import list_accounts
    from .access.db import transaction

    async def listing(engine: Any) -> list[Any]:
        async with transaction(engine) as conn:
            return await list_accounts(conn)

    for a in _with_engine(listing):
        print(f"{a.username}  {a.fhir_user}  {a.role}" + ("  disabled" if a.disabled else ""))
    return 0


def cmd_list_clients(_: argparse.Namespace) -> int:
    from .access.accounts import list_clients
    from .access.db import transaction

    async def listing(engine: Any) -> list[Any]:
        async with transaction(engine) as conn:
            return await list_clients(conn)

    for c in _with_engine(listing):
        where = " ".join(c.redirect_uris) or "-"
        print(f"{c.client_id}  {c.kind}  scope={c.scope or '-'}  redirect={where}"
              + ("  disabled" if c.disabled else ""))
    return 0


def cmd_set_password(args: argparse.Namespace) -> int:
    refused = _refuse_external("set-password")
    if refused is not None:
        return refused
    from .access.accounts import RegistrationError, set_password
    from .access.db import transaction

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"new password for {args.username}: ")

    async def change(engine: Any) -> None:
        async with transaction(engine, write=True) as conn:
            await set_password(conn, args.username, password)

    try:
        _with_engine(change)
    except RegistrationError as exc:
        print(f"pgo-work set-password: {exc}", file=sys.stderr)
        return 2
    print(f"password of {args.username} changed")
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    refused = _refuse_external("rotate-key")
    if refused is not None:
        return refused
    from .access.db import transaction
    from .access.keys import add_key

    async def rotate(engine: Any) -> str:
        async with transaction(engine, write=True) as conn:
            return await add_key(conn, args.alg)

    kid = _with_engine(rotate)
    print(f"signing key {kid} ({args.alg}) added; it signs from now on. Retire the previous key "
          "once the tokens it signed have expired: pgo-work retire-key KID")
    return 0


def cmd_list_keys(_: argparse.Namespace) -> int:
    from .access.db import transaction
    from .access.keys import list_keys

    async def listing(engine: Any) -> list[dict[str, Any]]:
        async with transaction(engine) as conn:
            return await list_keys(conn)

    for key in _with_engine(listing):
        state = f"retired {key['retired_at']:%Y-%m-%d %H:%M}" if key["retired_at"] else "active"
        print(f"{key['kid']}  {key['alg']}  created {key['created_at']:%Y-%m-%d %H:%M}  {state}")
    return 0


def cmd_retire_key(args: argparse.Namespace) -> int:
    refused = _refuse_external("retire-key")
    if refused is not None:
        return refused
    from .access.db import transaction
    from .access.keys import retire_key

    async def retire(engine: Any) -> bool:
        async with transaction(engine, write=True) as conn:
            return await retire_key(conn, args.kid)

    if not _with_engine(retire):
        print(f"pgo-work retire-key: no active key {args.kid}", file=sys.stderr)
        return 2
    print(f"signing key {args.kid} retired; tokens it signed are no longer accepted")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .http_server import server_options

    # Through the environment, so every worker process builds the same Settings: links and the
    # token audience follow --host/--port unless a base URL is configured (--base-url wins).
    os.environ["PGO_WORK_HOST"], os.environ["PGO_WORK_PORT"] = args.host, str(args.port)
    if args.base_url:
        os.environ["PGO_WORK_BASE_URL"] = args.base_url
    os.environ["PGO_WORK_RUN_WORKER"] = "0" if args.no_worker else "1"
    get_settings.cache_clear()
    print(f"pgo-work {__version__}: FHIR base {get_settings().base_url}", file=sys.stderr)
    if not args.no_migrate:
        _migrate()
    # server_options: the guarded protocol bounds request head and body time, connections per
    # worker, and hands over-long URLs to the app for its 414 (`service.http_server`).
    uvicorn.run("service.main:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=args.access_log,
                **server_options(get_settings()))
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    """The background tasks alone, until SIGINT/SIGTERM: as many as wanted beside the servers."""
    import asyncio
    import signal

    from .runtime import build_runtime
    from .worker.runner import run
    from .worker.tasks import default_tasks

    async def work() -> None:
        runtime = build_runtime(get_settings())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tasks = default_tasks()
        print(f"pgo-work worker: running {', '.join(t.name for t in tasks) or 'no tasks'}",
              file=sys.stderr)
        try:
            await run(runtime, tasks, stop)
        finally:
            await runtime.close()

    asyncio.run(work())
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="pgo-work", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pgo-work {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the FHIR API (migrates first)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default=settings.host,
                       help="interface to listen on (PGO_WORK_HOST); 0.0.0.0 for all")
    serve.add_argument("--port", type=int, default=settings.port,
                       help="port to listen on (PGO_WORK_PORT)")
    serve.add_argument("--workers", type=int, default=1,
                       help="uvicorn worker processes (each has its own connection pool)")
    serve.add_argument("--base-url", default=None,
                       help="public FHIR base URL for links and the token audience "
                            "(PGO_WORK_BASE_URL; default http://HOST:PORT/fhir); set it behind "
                            "a proxy")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    serve.add_argument("--no-migrate", action="store_true", help="do not run migrations first")
    serve.add_argument("--no-worker", action="store_true",
                       help="do not run the background tasks (deliveries, exports) in the server "
                            "processes; run `pgo-work worker` instead")
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser("worker", help="run the background tasks (deliveries, exports) without serving "
                                  "the API").set_defaults(fn=cmd_worker)
    sub.add_parser("migrate", help="upgrade the database schema to the newest version").set_defaults(
        fn=cmd_migrate)
    sub.add_parser("seed-demo", help="load the synthetic demo data (idempotent)").set_defaults(
        fn=cmd_seed_demo)
    _identity_commands(sub)
    from .ndjson_import import add_parser as add_import

    add_import(sub)  # pgo-work import FILE.ndjson|DIR (service/ndjson_import.py)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except Exception as exc:
        problem = database_problem(exc)
        if problem is None:
            raise
        print(f"pgo-work {args.command}: {problem}", file=sys.stderr)
        return 1


def _safe_url(url: str) -> str:
    """The database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the configured database"


def database_problem(exc: BaseException) -> str | None:
    """One line saying the database cannot be used, or None when `exc` is something else.

    A missing SQLite folder, a refused connection, an unknown database or a bad password
    arrive wrapped (Alembic, SQLAlchemy, asyncpg); the innermost error says what is wrong."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, DatabaseUnusable):
        return f"cannot use the database {_safe_url(get_settings().resolved_database_url())}: {exc}"
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if not any(isinstance(e, (OperationalError, InterfaceError, DBAPIError, OSError))
               or type(e).__module__.startswith("asyncpg") for e in chain):
        return None
    innermost = chain[-1]
    reason = str(innermost).strip().splitlines()[0] if str(innermost).strip() else \
        type(innermost).__name__
    url = _safe_url(get_settings().resolved_database_url())
    return (f"cannot use the database {url}: {reason} "
            "(check PGO_WORK_DATABASE_URL and that the database server runs)")


def _identity_commands(sub: Any) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
