"""clinical free text label: stored resources with free text not written for the employer

Data only, no schema. The security-label rule `clinical-free-text` (profiles/rules/
security-labels.json) gives a record resource with free text that was not written for the
employer (a description, note, progress note, reason, narrative, a free-text extension other
than employer-text) the label `content-label|clinical-text`, which the employer side never reads
(access-rules.json `neverLabels`). New writes get it from the labeler; the resources already
stored get it here, computed from EVERY stored version's content (labels are the union over
versions, so an old version with clinical text keeps its resource hidden from the employer).
The label goes into `resource_label`, the access index every query reads; the stored JSON is not
rewritten (the next write of the resource copies the label into its meta.security, as for every
label it carries). Downgrade keeps the labels: they only ever hide more.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    from service.store.backfill import has_versions, versions_in_order
    if not has_versions(bind):
        return  # a new database: nothing to label, no rules to load
    from service.config import get_settings
    from service.conformance.engine import LABEL_RULES
    from service.conformance.labels import SecurityLabeler

    path = get_settings().profiles_dir / LABEL_RULES
    if not path.exists():
        return
    # Compartments only decide the default data category, which is not recomputed here.
    labeler = SecurityLabeler(orjson.loads(path.read_bytes()), frozenset())
    if not labeler.other_rules:
        return
    systems = sa.bindparam("systems", sorted({str(r.system) for r in labeler.other_rules}),
                           expanding=True)
    have = {(pk, system, code) for pk, system, code in bind.execute(sa.text(
        "SELECT resource_pk, system, code FROM resource_label WHERE system IN :systems"
    ).bindparams(systems))}
    table = sa.table("resource_label", sa.column("resource_pk"), sa.column("system"),
                     sa.column("code"))
    for rows in versions_in_order(bind):
        new: list[dict[str, object]] = []
        for pk, _version, content in rows:
            if content is None:
                continue  # a deletion: the labels of the versions before it stand
            for system, code in labeler.other_labels_for(orjson.loads(content)):
                if (pk, system, code) not in have:
                    have.add((pk, system, code))
                    new.append({"resource_pk": pk, "system": system, "code": code})
        if new:
            bind.execute(table.insert(), new)


def downgrade() -> None:
    """Keep the labels: removing them would show the employer what they may not read."""
