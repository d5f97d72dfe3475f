"""Engine creation for SQLite (embedded default) and PostgreSQL (production).

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for writing transactions, so concurrent
writers queue instead of failing with "database is locked" halfway through a transaction.

`statement_timeout_ms` bounds every statement of the engine (the serving process's; migrations
and the CLI run unbounded): PostgreSQL's own `statement_timeout`, set once per connection, and
on SQLite a progress handler that interrupts a statement past its deadline. A cancelled
statement raises an error `is_statement_timeout` recognises, answered 503 `too-costly`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

WRITE_OPTION = "pgo_write"
_DEADLINE = "pgo_deadline"
_PROGRESS_STEPS = 1000
"""SQLite virtual-machine steps between two looks at the clock (a few microseconds)."""


def create_engine(url: str, pool_size: int = 10, echo: bool = False,
                  connect_timeout: float = 5.0, command_timeout: float = 60.0,
                  statement_timeout_ms: int = 0) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _sqlite_events(engine, statement_timeout_ms)
        return engine
    connect_args: dict[str, Any] = {}
    if statement_timeout_ms > 0:
        connect_args["server_settings"] = {"statement_timeout": str(statement_timeout_ms)}
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
        **_outage_options(connect_timeout, command_timeout, connect_args),
    )


def _outage_options(connect_timeout: float, command_timeout: float,
                    connect_args: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL pool options for surviving an outage.

    Pre-ping replaces a pooled connection the database closed (a restart, a failover) before a
    request uses it, so the first requests after the database is back succeed; the connect
    and command timeouts bound how long a request can wait on a database that is gone.
    """
    return {"pool_pre_ping": True, "pool_timeout": max(connect_timeout, 10.0),
            "connect_args": {**connect_args, "timeout": connect_timeout,
                             "command_timeout": command_timeout}}


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether `exc` is a statement the database cancelled (time limit or client gone)."""
    if not isinstance(exc, DBAPIError):
        return False
    driver = getattr(exc.orig, "driver_exception", exc.orig)
    if getattr(driver, "sqlstate", None) == "57014":  # PostgreSQL query_canceled
        return True
    return "interrupted" in str(exc.orig)  # sqlite3: the progress handler stopped it


def _sqlite_timeout(sync: Any, dbapi_conn: Any, record: Any, timeout_ms: int) -> None:
    """Interrupt any statement of this connection that runs past `timeout_ms`."""
    deadline = record.info.setdefault(_DEADLINE, [math.inf])

    def past_deadline() -> int:
        return 1 if time.monotonic() > deadline[0] else 0

    async def install(driver: Any) -> None:
        await driver.set_progress_handler(past_deadline, _PROGRESS_STEPS)

    dbapi_conn.run_async(install)


def _sqlite_events(engine: AsyncEngine, timeout_ms: int = 0) -> None:
    sync = engine.sync_engine

    if timeout_ms > 0:
        @event.listens_for(sync, "before_cursor_execute")
        def _arm(conn: Any, *_args: Any) -> None:
            conn.connection.info[_DEADLINE][0] = time.monotonic() + timeout_ms / 1000

        @event.listens_for(sync, "after_cursor_execute")
        def _disarm(conn: Any, *_args: Any) -> None:
            conn.connection.info[_DEADLINE][0] = math.inf

    @event.listens_for(sync, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
        if timeout_ms > 0:
            _sqlite_timeout(sync, dbapi_conn, record, timeout_ms)

    @event.listens_for(sync, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
