"""Which database failures are transient: the database is away, not the request wrong.

During an outage every request fails the same way (connection refused, connection terminated,
the server starting up or shutting down, no pool slot, SQLite still locked after its busy
timeout). Such a failure says nothing about the request, so the REST layer answers it with
503 and `Retry-After` instead of 500, and logs one line instead of a traceback. Everything
else (a constraint violation, a bug) stays a 500 with its traceback.
"""

from __future__ import annotations

import errno
import socket
import sqlite3

import asyncpg
from sqlalchemy import exc as sa_exc

_CONNECT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                             errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EPIPE,
                             errno.EADDRNOTAVAIL})
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")
# 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now; 53300 too many
# connections. Not 57014 (query cancelled: a statement timeout is about the query).
_PG_TRANSIENT = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
                 asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError,
                 asyncpg.TooManyConnectionsError)

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error)
"""The exception types a database failure surfaces as; `transient` picks the outages out."""


def _transient_one(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # no pool slot within pool_timeout
        return True
    if isinstance(exc, _PG_TRANSIENT):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True
    if isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(_SQLITE_BUSY):
        return True
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    # asyncpg reports a refused connect to a host with several addresses as a plain OSError
    # ("Multiple exceptions: [Errno 111] Connect call failed ...").
    return isinstance(exc, OSError) and (exc.errno in _CONNECT_ERRNOS
                                         or "Connect call failed" in str(exc))


def transient(exc: BaseException) -> BaseException | None:
    """The transient database failure `exc` is or was caused by, or None.

    Follows `__cause__` and `__context__` (SQLAlchemy wraps the driver's error, which wraps the
    socket's), a few levels deep.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 12:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _transient_one(current):
            return current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def describe(exc: BaseException) -> str:
    """One line about a transient failure, for the log."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
