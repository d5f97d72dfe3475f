"""What every `pgo-work` command shares: the configured database, migrated first, and one-line
errors instead of tracebacks when it cannot be used."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import get_settings

T = TypeVar("T")


class DatabaseUnusable(Exception):
    """The configured database cannot be opened; the message says why, in one line."""


def check_sqlite_folder(url: str) -> None:
    """An SQLite file in a folder that does not exist: say so before a driver thread fails
    noisily at interpreter exit."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(str(parsed.database)).parent
        if not folder.is_dir():
            raise DatabaseUnusable(f"the folder {folder} does not exist")


def migrate_database() -> None:
    from ..store.migrate import upgrade

    url = get_settings().resolved_database_url()
    check_sqlite_folder(url)
    upgrade(url)


def with_engine(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(engine)` on the configured database (migrated first)."""
    from ..store.database import create_engine

    migrate_database()

    async def run() -> T:
        engine = create_engine(get_settings().resolved_database_url())
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def refuse_external(command: str) -> int | None:
    issuer = get_settings().oidc_issuer
    if issuer:
        print(f"pgo-work {command}: PGO_WORK_OIDC_ISSUER is set ({issuer}); this server only accepts "
              "tokens from that issuer, so the built-in issuer's tokens, accounts and clients "
              "would not work. Unset it to use the built-in authorization server.", file=sys.stderr)
        return 2
    return None


def safe_url(url: str) -> str:
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
        return f"cannot use the database {safe_url(get_settings().resolved_database_url())}: {exc}"
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
    url = safe_url(get_settings().resolved_database_url())
    return (f"cannot use the database {url}: {reason} "
            "(check PGO_WORK_DATABASE_URL and that the database server runs)")




def read_password(args: Any, prompt: str) -> str:
    """From standard input with `--password-stdin` (scripts), otherwise an interactive prompt."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(prompt)


def registration(command: str, fn: Callable[[Any], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run `fn(engine)`; a refused registration (a taken name, a weak password) is one line on
    stderr and (False, None), as every identity command reports it."""
    from ..access.accounts import RegistrationError

    try:
        return True, with_engine(fn)
    except RegistrationError as exc:
        print(f"pgo-work {command}: {exc}", file=sys.stderr)
        return False, None
