"""The baseline: the same work as hand-written SQL through the bare driver (aiosqlite, asyncpg).

One persistent connection, no ORM, no FHIR logic: what the database itself costs, so the
ratio ours/raw shows what our FHIR layer adds on top.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_PLACEHOLDER = re.compile(r"\$\d+")

RAW_TABLE_SQLITE = """CREATE TABLE bench_raw (
    pk INTEGER PRIMARY KEY, resource_type VARCHAR(64) NOT NULL, id VARCHAR(64) NOT NULL,
    version_id INTEGER NOT NULL, last_updated DATETIME NOT NULL, content TEXT,
    UNIQUE (resource_type, id))"""
RAW_TABLE_PG = """CREATE TABLE bench_raw (
    pk BIGSERIAL PRIMARY KEY, resource_type VARCHAR(64) NOT NULL, id VARCHAR(64) NOT NULL,
    version_id INTEGER NOT NULL, last_updated TIMESTAMP NOT NULL, content TEXT,
    UNIQUE (resource_type, id))"""
INSERT_RAW = ("INSERT INTO bench_raw (resource_type, id, version_id, last_updated, content) "
              "VALUES ($1, $2, $3, $4, $5)")


class RawDb:
    """A thin async facade over one bare driver connection; SQL is written with `$n` markers,
    in order, and becomes `?` for SQLite."""

    def __init__(self, kind: str, conn: Any) -> None:
        self.kind = kind
        self.conn = conn

    @classmethod
    async def connect(cls, kind: str, dsn: str) -> RawDb:
        if kind == "sqlite":
            import aiosqlite

            conn = await aiosqlite.connect(dsn, isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                await conn.execute(f"PRAGMA {pragma}")
            return cls(kind, conn)
        import asyncpg

        return cls(kind, await asyncpg.connect(dsn))

    def _sql(self, sql: str) -> str:
        return _PLACEHOLDER.sub("?", sql) if self.kind == "sqlite" else sql

    def when(self, dt: datetime) -> Any:
        """A timestamp parameter as the schema stores it (SQLAlchemy's text form on SQLite)."""
        return dt.strftime("%Y-%m-%d %H:%M:%S.%f") if self.kind == "sqlite" else dt

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if self.kind == "sqlite":
            async with self.conn.execute(self._sql(sql), args) as cur:
                return list(await cur.fetchall())
        return list(await self.conn.fetch(sql, *args))

    async def scalar(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        if self.kind == "sqlite":
            await self.conn.execute(self._sql(sql), args)
        else:
            await self.conn.execute(sql, *args)

    async def write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """All `rows` in one transaction (BEGIN IMMEDIATE on SQLite, as our store does)."""
        if self.kind == "sqlite":
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self.conn.executemany(self._sql(sql), rows)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            return
        async with self.conn.transaction():
            if len(rows) == 1:
                await self.conn.execute(sql, *rows[0])
            else:
                await self.conn.executemany(sql, rows)

    async def create_scratch(self) -> None:
        await self.execute("DROP TABLE IF EXISTS bench_raw")
        await self.execute(RAW_TABLE_SQLITE if self.kind == "sqlite" else RAW_TABLE_PG)

    async def scratch_size(self) -> int:
        """Bytes the scratch table and its indexes take."""
        if self.kind == "sqlite":
            return int(await self.scalar(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = 'bench_raw')") or 0)
        return int(await self.scalar("SELECT pg_total_relation_size('bench_raw')"))

    async def close(self) -> None:
        await self.conn.close()


# -- the hand-written equivalents of our searches ----------------------------------------------
# Same tables, same indexes, written the way one would by hand for exactly this query.
READ = "SELECT content, version_id, last_updated FROM resource WHERE resource_type = $1 AND id = $2"
VREAD = ("SELECT v.content FROM resource r JOIN resource_version v ON v.resource_pk = r.pk "
         "AND v.version_id = $1 WHERE r.resource_type = $2 AND r.id = $3")

_PATIENT_CODE_DATE_FROM = """
FROM resource r
JOIN idx_reference p ON p.resource_pk = r.pk AND p.param = 'Observation.patient'
     AND p.target_type = 'Patient' AND p.target_id = $1
JOIN idx_token c ON c.resource_pk = r.pk AND c.param = 'Observation.code'
     AND c.system = $2 AND c.code = $3
WHERE r.resource_type = 'Observation' AND NOT r.deleted
  AND EXISTS (SELECT 1 FROM idx_date d WHERE d.resource_pk = r.pk AND d.param = 'Observation.date'
              AND d.high >= $4)"""
SEARCH_PATIENT_CODE_DATE = f"SELECT r.content {_PATIENT_CODE_DATE_FROM} ORDER BY r.pk LIMIT $5"
COUNT_PATIENT_CODE_DATE = f"SELECT count(*) {_PATIENT_CODE_DATE_FROM}"

_PATIENT_FROM = """
FROM resource r
JOIN idx_reference p ON p.resource_pk = r.pk AND p.param = 'Observation.patient'
     AND p.target_type = 'Patient' AND p.target_id = $1
JOIN idx_date d ON d.resource_pk = r.pk AND d.param = 'Observation.date'
WHERE r.resource_type = 'Observation' AND NOT r.deleted"""
_CODE_FROM = """
FROM resource r
JOIN idx_token c ON c.resource_pk = r.pk AND c.param = 'Observation.code'
     AND c.system = $1 AND c.code = $2
JOIN idx_date d ON d.resource_pk = r.pk AND d.param = 'Observation.date'
WHERE r.resource_type = 'Observation' AND NOT r.deleted"""
_KEYSET = " AND (d.high < $3 OR (d.high = $4 AND r.pk > $5))"
_DATE_ORDER = " ORDER BY d.high DESC, r.pk ASC LIMIT "
SORTED_BY_PATIENT_FIRST = f"SELECT r.content, d.high, r.pk {_PATIENT_FROM}{_DATE_ORDER}$2"
SORTED_BY_PATIENT_NEXT = (f"SELECT r.content, d.high, r.pk {_PATIENT_FROM}"
                          f"{_KEYSET.replace('$3', '$2').replace('$4', '$3').replace('$5', '$4')}"
                          f"{_DATE_ORDER}$5")
COUNT_BY_PATIENT = f"SELECT count(*) {_PATIENT_FROM}"
SORTED_BY_CODE_FIRST = f"SELECT r.content, d.high, r.pk {_CODE_FROM}{_DATE_ORDER}$3"
SORTED_BY_CODE_NEXT = f"SELECT r.content, d.high, r.pk {_CODE_FROM}{_KEYSET}{_DATE_ORDER}$6"
COUNT_BY_CODE = f"SELECT count(*) {_CODE_FROM}"

_INCLUDE_FROM = """
FROM resource r
JOIN idx_reference p ON p.resource_pk = r.pk AND p.param = 'Observation.patient'
     AND p.target_type = 'Patient' AND p.target_id = $1
WHERE r.resource_type = 'Observation' AND NOT r.deleted"""
INCLUDE_MATCHES = f"SELECT r.pk, r.content {_INCLUDE_FROM} ORDER BY r.pk LIMIT $2"
INCLUDE_COUNT = f"SELECT count(*) {_INCLUDE_FROM}"


def include_subjects(n: int) -> str:
    """The Patients the `n` matched Observations (pks as $1..$n) point at."""
    marks = ", ".join(f"${i}" for i in range(1, n + 1))
    return ("SELECT DISTINCT t.pk, t.content FROM idx_reference i JOIN resource t "
            "ON t.resource_type = i.target_type AND t.id = i.target_id "
            f"WHERE i.param = 'Observation.subject' AND i.resource_pk IN ({marks}) "
            "AND NOT t.deleted")
