"""version facts: the codes and clinical dates of every stored version, for consent

A provision's `code` and `dataPeriod` were judged by the current version's search indexes,
which a delete clears: an old version was judged by what the resource says now (or, after a
delete, by nothing). `version_code` and `version_period` keep, per (resource, version), the
codes and clinical dates consent judges; a deletion carries the facts of the version it deleted.

Existing versions are backfilled here, from their stored content with the search parameters
of the profiles the server runs with (`PGO_WORK_PROFILES_DIR`), so no stored version is left
without facts (a deny with `code` would otherwise miss it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _create(name: str, *columns: sa.Column[Any]) -> None:
    op.create_table(
        name,
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("resource_pk", _PK, nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["resource_pk"], ["resource.pk"],
                                name=op.f(f"fk_{name}_resource_pk_resource"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    _create("version_code",
            sa.Column("system", sa.String(length=255), nullable=True),
            sa.Column("code", sa.String(length=255), nullable=True))
    with op.batch_alter_table("version_code", schema=None) as batch_op:
        batch_op.create_index("ix_version_code_lookup",
                              ["resource_pk", "version_id", "code", "system"], unique=False)
    _create("version_period",
            sa.Column("low", sa.DateTime(), nullable=False),
            sa.Column("high", sa.DateTime(), nullable=False))
    with op.batch_alter_table("version_period", schema=None) as batch_op:
        batch_op.create_index("ix_version_period_lookup",
                              ["resource_pk", "version_id", "low", "high"], unique=False)
    _backfill()


def _backfill() -> None:
    """Facts for every stored version, in version order per resource, so a deletion takes
    those of the version before it (as `ResourceStore.delete` does)."""
    bind = op.get_bind()
    from service.store.backfill import has_versions, server_registry, versions_in_order
    if not has_versions(bind):
        return  # a new database: nothing to read, no package to load
    from service.store.indexer import Indexer, version_facts

    indexer = Indexer(server_registry())
    codes_table = sa.table("version_code", sa.column("resource_pk"), sa.column("version_id"),
                           sa.column("system"), sa.column("code"))
    periods_table = sa.table("version_period", sa.column("resource_pk"), sa.column("version_id"),
                             sa.column("low"), sa.column("high"))
    last: tuple[int, list[dict[str, Any]], list[dict[str, Any]]] | None = None
    for rows in versions_in_order(bind):
        codes: list[dict[str, Any]] = []
        periods: list[dict[str, Any]] = []
        for pk, version, content in rows:
            if content is None:
                found_codes, found_periods = (last[1], last[2]) if last and last[0] == pk \
                    else ([], [])
            else:
                found_codes, found_periods = version_facts(indexer.index(orjson.loads(content)))
            last = (pk, found_codes, found_periods)
            key = {"resource_pk": pk, "version_id": version}
            codes.extend({**key, **c} for c in found_codes)
            periods.extend({**key, **p} for p in found_periods)
        if codes:
            bind.execute(codes_table.insert(), codes)
        if periods:
            bind.execute(periods_table.insert(), periods)


def downgrade() -> None:
    with op.batch_alter_table("version_period", schema=None) as batch_op:
        batch_op.drop_index("ix_version_period_lookup")
    op.drop_table("version_period")
    with op.batch_alter_table("version_code", schema=None) as batch_op:
        batch_op.drop_index("ix_version_code_lookup")
    op.drop_table("version_code")
