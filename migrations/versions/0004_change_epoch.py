"""change epoch: a counter per reference, bumped with every write that names it

The access layer resolves, per request, who the caller is (PractitionerRoles, CareTeams) and
which Consents name them. That is derived from a few resource types only, and only from those
that name one of the caller's references; the counters let an instance reuse what it resolved
before for as long as none of those resources changed, checked with one indexed read per
request, and never reuse it a moment longer (the bump commits with the change).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_epoch",
        sa.Column("ref", sa.String(length=130), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_change_epoch")),
    )


def downgrade() -> None:
    op.drop_table("change_epoch")
