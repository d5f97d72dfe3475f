"""Persistence of Bulk Data export jobs and their files (`export_job`, `export_file`).

Only rows: nothing about export jobs lives in process memory, so every instance can poll, serve
and advance any job. The worker claims a job's next chunk with a row lock (`FOR UPDATE SKIP
LOCKED` on PostgreSQL; SQLite has one writer at a time) inside the transaction that writes the
chunk's file and its new cursor, so a chunk is written once or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import ExportFile, ExportJob

JOB = cast(Table, ExportJob.__table__)
FILE = cast(Table, ExportFile.__table__)
ACTIVE = ("accepted", "running")


@dataclass
class Job:
    id: str
    owner: str
    claims: dict[str, Any]
    params: dict[str, Any]
    request_url: str
    status: str
    cursor: dict[str, Any] | None
    exported: int
    patients: list[str]
    error: str | None
    transaction_time: datetime
    created_at: datetime
    updated_at: datetime
    expires_at: datetime

    @property
    def raw_cursor(self) -> str | None:
        return orjson.dumps(self.cursor).decode() if self.cursor is not None else None


@dataclass(frozen=True)
class FileInfo:
    seq: int
    resource_type: str
    count: int


def _job(row: Any) -> Job:
    return Job(row.id, row.owner, orjson.loads(row.claims), orjson.loads(row.params),
               row.request_url, row.status, orjson.loads(row.cursor) if row.cursor else None,
               row.exported, orjson.loads(row.patients) if row.patients else [], row.error,
               row.transaction_time, row.created_at, row.updated_at, row.expires_at)


async def create_job(conn: AsyncConnection, job: Job) -> None:
    await conn.execute(insert(JOB).values(
        id=job.id, owner=job.owner, claims=orjson.dumps(job.claims).decode(),
        params=orjson.dumps(job.params).decode(), request_url=job.request_url,
        status=job.status, cursor=job.raw_cursor, exported=job.exported,
        patients=orjson.dumps(job.patients).decode(), error=job.error,
        transaction_time=job.transaction_time, created_at=job.created_at,
        updated_at=job.updated_at, expires_at=job.expires_at))


async def load_job(conn: AsyncConnection, job_id: str) -> Job | None:
    row = (await conn.execute(select(JOB).where(JOB.c.id == job_id))).first()
    return _job(row) if row is not None else None


async def lock_active(conn: AsyncConnection, job_id: str) -> Job | None:
    """The job, locked for this transaction, if it still wants work and no other transaction
    holds it (PostgreSQL skips a locked row instead of waiting for it)."""
    stmt = select(JOB).where(JOB.c.id == job_id, JOB.c.status.in_(ACTIVE))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    row = (await conn.execute(stmt)).first()
    return _job(row) if row is not None else None


async def due_jobs(conn: AsyncConnection, limit: int = 5) -> list[tuple[str, str]]:
    """(id, claims) of jobs that want work, least recently advanced first (so jobs take turns
    and one large export does not starve the others). Not locked: `lock_active` claims."""
    stmt = select(JOB.c.id, JOB.c.claims).where(JOB.c.status.in_(ACTIVE)) \
        .order_by(JOB.c.updated_at, JOB.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [(row.id, row.claims) for row in await conn.execute(stmt)]


async def save_progress(conn: AsyncConnection, job: Job) -> None:
    await conn.execute(update(JOB).where(JOB.c.id == job.id).values(
        status=job.status, cursor=job.raw_cursor, exported=job.exported,
        patients=orjson.dumps(sorted(job.patients)).decode(), error=job.error,
        updated_at=job.updated_at, expires_at=job.expires_at))


async def add_file(conn: AsyncConnection, job_id: str, seq: int, resource_type: str,
                   lines: list[str], refs: list[tuple[int, str]]) -> None:
    await conn.execute(insert(FILE).values(
        job_id=job_id, seq=seq, resource_type=resource_type, count=len(lines),
        content="".join(line + "\n" for line in lines), refs=orjson.dumps(refs).decode()))


async def files_of(conn: AsyncConnection, job_id: str) -> list[FileInfo]:
    rows = await conn.execute(select(FILE.c.seq, FILE.c.resource_type, FILE.c.count)
                              .where(FILE.c.job_id == job_id).order_by(FILE.c.seq))
    return [FileInfo(r.seq, r.resource_type, r._mapping["count"]) for r in rows]


async def read_file(conn: AsyncConnection, job_id: str, seq: int) -> tuple[str, str, list[Any]] | None:
    """(resource type, NDJSON, refs) of one file."""
    row = (await conn.execute(select(FILE.c.resource_type, FILE.c.content, FILE.c.refs).where(
        FILE.c.job_id == job_id, FILE.c.seq == seq))).first()
    return (row.resource_type, row.content, orjson.loads(row.refs)) if row is not None else None


async def end_job(conn: AsyncConnection, job_id: str, status: str, now: datetime) -> None:
    """Cancelled or expired: the files go, the row stays (who exported what, for whom)."""
    # The row first: it waits for a chunk in progress (its lock), whose file then goes too.
    await conn.execute(update(JOB).where(JOB.c.id == job_id).values(
        status=status, cursor=None, updated_at=now))
    await conn.execute(delete(FILE).where(FILE.c.job_id == job_id))


async def expired_jobs(conn: AsyncConnection, now: datetime, limit: int = 20) -> list[str]:
    stmt = select(JOB.c.id).where(JOB.c.expires_at <= now,
                                  JOB.c.status.in_(("accepted", "running", "completed", "failed"))
                                  ).order_by(JOB.c.expires_at).limit(limit)
    return [row.id for row in await conn.execute(stmt)]


async def present_types(conn: AsyncConnection) -> list[str]:
    """The resource types stored now (current, not deleted): what a system export covers."""
    from .repository import RES

    rows = await conn.execute(select(RES.c.resource_type).where(RES.c.deleted.is_(False))
                              .group_by(RES.c.resource_type).order_by(RES.c.resource_type))
    return [r.resource_type for r in rows]


async def count_files(conn: AsyncConnection, job_id: str) -> int:
    return int((await conn.execute(select(func.count()).select_from(FILE).where(
        FILE.c.job_id == job_id))).scalar_one())
