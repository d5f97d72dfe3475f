"""Persistence of Subscriptions and their outbox (`tables.SubscriptionRow`,
`tables.SubscriptionEvent`): plain statements on the caller's connection, so an event row
commits or rolls back with the change that caused it.

Who may see a Subscription, and which events it gets, is decided above this module
(`service.subscriptions`); here only rows are read and written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import SubscriptionEvent, SubscriptionRow

SUB = cast(Table, SubscriptionRow.__table__)
EVENT = cast(Table, SubscriptionEvent.__table__)
LIVE = ("requested", "active")
"""The statuses under which events are recorded and delivered."""


@dataclass(frozen=True)
class EventRow:
    number: int
    occurred_at: datetime
    interaction: str
    focus_type: str
    focus_id: str
    focus_version: int


@dataclass(frozen=True)
class Change:
    """One written resource version that matched a subscription."""

    interaction: str
    resource_type: str
    id: str
    version: int
    at: datetime


async def insert_subscription(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(SUB), values)


async def get(conn: AsyncConnection, sid: str, lock: bool = False) -> Any:
    stmt = select(SUB).where(SUB.c.id == sid)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).mappings().first()


async def list_owned(conn: AsyncConnection, owner_key: str | None, limit: int) -> list[Any]:
    """The subscriptions of one owner (None: all, for the operator), oldest first."""
    stmt = select(SUB).order_by(SUB.c.last_updated, SUB.c.id).limit(limit)
    if owner_key is not None:
        stmt = stmt.where(SUB.c.owner_key == owner_key)
    return list((await conn.execute(stmt)).mappings())


async def change(conn: AsyncConnection, sid: str, values: dict[str, Any]) -> None:
    await conn.execute(update(SUB).where(SUB.c.id == sid).values(**values))


async def remove(conn: AsyncConnection, sid: str) -> None:
    await conn.execute(delete(EVENT).where(EVENT.c.subscription_id == sid))
    await conn.execute(delete(SUB).where(SUB.c.id == sid))


async def live_for_topics(conn: AsyncConnection, topics: Sequence[str]) -> list[Any]:
    """The subscriptions that record events for these topics (one indexed query)."""
    rows = await conn.execute(select(SUB.c.id, SUB.c.topic, SUB.c.owner, SUB.c.content).where(
        SUB.c.topic.in_(sorted(topics)), SUB.c.status.in_(LIVE)).order_by(SUB.c.id))
    return list(rows.mappings())


async def append_events(conn: AsyncConnection, sid: str, changes: Sequence[Change]) -> None:
    """Number the changes after the subscription's last event and write them. The counter's
    row lock serialises writers of the same subscription until they commit, so numbers are
    handed out in commit order without gaps (a rollback takes its numbers back with it)."""
    last = (await conn.execute(update(SUB).where(SUB.c.id == sid).values(
        events_count=SUB.c.events_count + len(changes)).returning(SUB.c.events_count))).scalar_one()
    first = last - len(changes) + 1
    await conn.execute(insert(EVENT), [
        {"subscription_id": sid, "event_number": first + i, "occurred_at": c.at,
         "interaction": c.interaction, "focus_type": c.resource_type, "focus_id": c.id,
         "focus_version": c.version} for i, c in enumerate(changes)])


async def events(conn: AsyncConnection, sid: str, since: int, until: int | None,
                 limit: int) -> list[EventRow]:
    """Events numbered `since`..`until` (inclusive), in order, at most `limit`."""
    cond = [EVENT.c.subscription_id == sid, EVENT.c.event_number >= since]
    if until is not None:
        cond.append(EVENT.c.event_number <= until)
    rows = await conn.execute(select(EVENT).where(*cond).order_by(EVENT.c.event_number)
                              .limit(limit))
    return [EventRow(r.event_number, r.occurred_at, r.interaction, r.focus_type, r.focus_id,
                     r.focus_version) for r in rows]


async def claim_due(conn: AsyncConnection, now: datetime, lease_until: datetime, owner: str,
                    limit: int) -> list[Any]:
    """Lease up to `limit` subscriptions with something to send now: a handshake, events not
    yet acknowledged, or a heartbeat. The row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
    SQLite has one writer) makes two instances never lease the same one; the lease keeps it
    theirs after this transaction, until it is released or runs out (a killed instance's
    lease runs out and another picks the work up)."""
    due = and_(SUB.c.status.in_(LIVE), SUB.c.next_attempt_at <= now,
               or_(SUB.c.lease_until.is_(None), SUB.c.lease_until < now),
               or_(SUB.c.status == "requested", SUB.c.events_count > SUB.c.delivered_through,
                   SUB.c.heartbeat_due_at <= now))
    stmt = select(SUB.c.id).where(due).order_by(SUB.c.next_attempt_at).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = [r.id for r in await conn.execute(stmt)]
    if not ids:
        return []
    # The lease is taken only where none is held (a second guard besides the row lock).
    await conn.execute(update(SUB).where(SUB.c.id.in_(ids), or_(
        SUB.c.lease_until.is_(None), SUB.c.lease_until < now)).values(
        lease_until=lease_until, lease_owner=owner))
    return list((await conn.execute(select(SUB).where(
        SUB.c.id.in_(ids), SUB.c.lease_owner == owner))).mappings())


async def release(conn: AsyncConnection, sid: str, owner: str, values: dict[str, Any]) -> bool:
    """Record the outcome of a delivery and give the lease back; False when the lease was no
    longer ours (it ran out and another instance took over): then nothing is recorded."""
    result = await conn.execute(update(SUB).where(SUB.c.id == sid, SUB.c.lease_owner == owner)
                                .values(lease_until=None, lease_owner=None, **values))
    return bool(result.rowcount)
