"""covering search indexes and a version lookup index

The search compiler selects `resource_pk` from index tables by (param, value): with
`resource_pk` as the last column the database answers from the index alone. vread and
instance history look versions up by (resource_type, id, version_id), which had no index and
scanned every version (45-54 ms at 100,000 versions, docs/benchmarks.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, index, old columns, new columns)
LOOKUPS = [
    ("idx_token", "ix_idx_token_lookup", ["param", "code", "system"]),
    ("idx_string", "ix_idx_string_lookup", ["param", "value_norm"]),
    ("idx_date", "ix_idx_date_lookup", ["param", "low", "high"]),
    ("idx_number", "ix_idx_number_lookup", ["param", "value"]),
    ("idx_quantity", "ix_idx_quantity_lookup", ["param", "code", "value"]),
    ("idx_quantity", "ix_idx_quantity_canonical", ["param", "canonical_unit", "canonical_value"]),
    ("idx_reference", "ix_idx_reference_lookup", ["param", "target_id", "target_type"]),
    ("idx_uri", "ix_idx_uri_lookup", ["param", "value"]),
]


def upgrade() -> None:
    for table, name, columns in LOOKUPS:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [*columns, "resource_pk"])
    op.create_index("ix_resource_version_identity", "resource_version",
                    ["resource_type", "id", "version_id"])


def downgrade() -> None:
    op.drop_index("ix_resource_version_identity", table_name="resource_version")
    for table, name, columns in LOOKUPS:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
