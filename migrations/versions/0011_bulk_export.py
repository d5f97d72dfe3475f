"""bulk export: durable export jobs and their NDJSON files

`export_job` holds one Bulk Data export (`$export`, `pgo-work export`): the requester's claims,
the parameters, the worker's cursor and the expiry; `export_file` its output files, in the
database so that every instance can serve them (the server keeps nothing on local disk).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("claims", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("exported", sa.Integer(), nullable=False),
        sa.Column("patients", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("transaction_time", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_export_job"),
    )
    op.create_index("ix_export_job_status", "export_job", ["status", "updated_at"])
    op.create_table(
        "export_file",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("refs", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["export_job.id"], ondelete="CASCADE",
                                name="fk_export_file_job_id_export_job"),
        sa.PrimaryKeyConstraint("pk", name="pk_export_file"),
        sa.UniqueConstraint("job_id", "seq", name="uq_export_file_job_id_seq"),
    )


def downgrade() -> None:
    op.drop_table("export_file")
    op.drop_index("ix_export_job_status", table_name="export_job")
    op.drop_table("export_job")
