"""subscriptions: topic-based Subscriptions and their durable outbox

A Subscription row holds its owner's verified claims (to rebuild their access at every event),
its spec and its delivery state; `subscription_event` is the outbox, written in the same
transaction as the change that triggers it, numbered per subscription without gaps.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner_key", sa.String(length=512), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("events_count", sa.BigInteger(), nullable=False),
        sa.Column("delivered_through", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_due_at", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription")),
    )
    op.create_index(op.f("ix_subscription_owner_key"), "subscription", ["owner_key"])
    op.create_index("ix_subscription_topic_status", "subscription", ["topic", "status"])
    op.create_table(
        "subscription_event",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("event_number", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("interaction", sa.String(length=16), nullable=False),
        sa.Column("focus_type", sa.String(length=64), nullable=False),
        sa.Column("focus_id", sa.String(length=64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscription.id"],
                                name=op.f("fk_subscription_event_subscription_id_subscription"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_subscription_event")),
        sa.UniqueConstraint("subscription_id", "event_number",
                            name=op.f("uq_subscription_event_subscription_id_event_number")),
    )


def downgrade() -> None:
    op.drop_table("subscription_event")
    op.drop_index("ix_subscription_topic_status", table_name="subscription")
    op.drop_index(op.f("ix_subscription_owner_key"), table_name="subscription")
    op.drop_table("subscription")
