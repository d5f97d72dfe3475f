"""The database gauges this server exposes. Each is one `register_db_gauge` line; a module
that owns a table (the subscription outbox, export jobs) adds its line here, importing its
read function lazily so this module stays free of the REST and operations layers."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store.tables import ExportJob, Resource, SubscriptionRow
from .db_gauges import register_db_gauge


async def resources_stored(conn: AsyncConnection) -> dict[tuple[str, ...], float]:
    """Current, non-deleted resources per type (AuditEvents included): a count, no content."""
    rows = await conn.execute(select(Resource.resource_type, func.count())
                              .where(Resource.deleted.is_(False)).group_by(Resource.resource_type))
    return {(rtype,): float(count) for rtype, count in rows}


async def outbox_depth(conn: AsyncConnection) -> dict[tuple[str, ...], float]:
    """Events recorded but not yet delivered, per subscription status (`requested`, `active`,
    `error`, `off`): the outbox's backlog, without naming a subscription or its owner."""
    rows = await conn.execute(
        select(SubscriptionRow.status,
               func.coalesce(func.sum(SubscriptionRow.events_count
                                      - SubscriptionRow.delivered_through), 0))
        .group_by(SubscriptionRow.status))
    return {(status,): float(depth) for status, depth in rows}


async def export_jobs(conn: AsyncConnection) -> dict[tuple[str, ...], float]:
    """Bulk Data export jobs by status (accepted, running, completed, ...): counts only."""
    rows = await conn.execute(select(ExportJob.status, func.count()).group_by(ExportJob.status))
    return {(status,): float(count) for status, count in rows}


def install_default_gauges() -> None:
    """Register every gauge (idempotent: a gauge is replaced by name)."""
    register_db_gauge("pgo_work_resources_stored", "Current (not deleted) resources in the "
                      "database, by resource type", resources_stored, labels=("resource_type",))
    register_db_gauge("pgo_work_subscription_outbox_depth", "Subscription events recorded and "
                      "not yet delivered, by subscription status", outbox_depth, labels=("status",))
    register_db_gauge("pgo_work_export_jobs", "Bulk Data export jobs kept, by status", export_jobs,
                      labels=("status",))
