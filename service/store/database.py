"""Engine creation for SQLite (embedded default) and PostgreSQL (production).

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for writing transactions, so concurrent
writers queue instead of failing with "database is locked" halfway through a transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

WRITE_OPTION = "pgo_write"


def create_engine(url: str, pool_size: int = 10, echo: bool = False,
                  connect_timeout: float = 5.0, command_timeout: float = 60.0) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _sqlite_events(engine)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
        **_outage_options(connect_timeout, command_timeout)
    )


def _outage_options(connect_timeout: float, command_timeout: float) -> dict[str, Any]:
    """PostgreSQL pool options for surviving an outage.

    Pre-ping replaces a pooled connection the database closed (a restart, a failover) before a
    request uses it, so the first requests after the database is back succeed; the connect
    and command timeouts bound how long a request can wait on a database that is gone.
    """
    return {"pool_pre_ping": True, "pool_timeout": max(connect_timeout, 10.0),
            "connect_args": {"timeout": connect_timeout, "command_timeout": command_timeout}}


def _sqlite_events(engine: AsyncEngine) -> None:
    sync = engine.sync_engine

    @event.listens_for(sync, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(sync, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
