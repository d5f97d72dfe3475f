"""The PostgreSQL server the tests and the reliability suite create their databases on.

PGO_WORK_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test) is the admin connection;
PGO_WORK_TEST_PG_DATABASE and PGO_WORK_TEST_PG_PORT override its database name and port alone.
Every caller creates a database of its own there, so runs side by side never share data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy.engine import make_url


def pg_admin_url(environ: Mapping[str, str]) -> str:
    """The admin connection: PGO_WORK_TEST_PG, with its database name and port overridden by
    PGO_WORK_TEST_PG_DATABASE and PGO_WORK_TEST_PG_PORT when set (the test databases are
    created on that server, next to it)."""
    url = make_url(environ.get("PGO_WORK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    if environ.get("PGO_WORK_TEST_PG_DATABASE"):
        url = url.set(database=environ["PGO_WORK_TEST_PG_DATABASE"])
    if environ.get("PGO_WORK_TEST_PG_PORT"):
        url = url.set(port=int(environ["PGO_WORK_TEST_PG_PORT"]))
    return url.render_as_string(hide_password=False)


PG_ADMIN = pg_admin_url(os.environ)


async def pg_admin(sql: str) -> None:
    """One statement on the admin connection (CREATE/DROP DATABASE cannot run in a transaction)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def new_pg_database(prefix: str) -> tuple[str, Callable[[], None]]:
    """A new empty database `{prefix}_{random}` on the server: its async URL, and the function
    that drops it (connections still open are closed by the drop)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    host = PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host}/{name}", drop
