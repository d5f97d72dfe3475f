"""ongoing clinical periods: stored versions of data still going on get an open end

Data only, no schema. A version's clinical time (`version_period`, migration 0006) ran from its
earliest to its latest clinical date, so an active Condition with its onset in 2019 and no
abatement spanned 2019 only: a "deny dataPeriod 2020" left it readable, a permit limited to a
period granted it. The clinical-date SearchParameters now carry a rule
(`clinical-date-ongoing`) that gives such a version an open end (`indexer.version_facts`).

The versions already stored of every type with a rule get their facts recomputed here, from
their own content with the profiles the server runs with (`PGO_WORK_PROFILES_DIR`), a deletion
those of the version it deleted (as `ResourceStore.delete` does). Codes do not change.
Downgrade keeps the open ends: they only make a deny cover more and a permit grant less, which
is what the older code would fail to if they were removed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    from service.store.backfill import has_versions, server_registry, versions_in_order
    if not has_versions(bind):
        return  # a new database: nothing to recompute, no package to load
    from service.store.indexer import CLINICAL_DATE_PARAM, Indexer, version_facts

    registry = server_registry()
    types = [t for t in registry.types_with_params()
             if (p := registry.get(t, CLINICAL_DATE_PARAM)) is not None and p.ongoing is not None]
    if not types:
        return
    indexer = Indexer(registry)
    bind.execute(sa.text(
        "DELETE FROM version_period WHERE resource_pk IN "
        "(SELECT pk FROM resource WHERE resource_type IN :types)").bindparams(
        sa.bindparam("types", types, expanding=True)))
    periods_table = sa.table("version_period", sa.column("resource_pk"), sa.column("version_id"),
                             sa.column("low"), sa.column("high"))
    last: tuple[int, list[dict[str, Any]]] | None = None
    for rows in versions_in_order(bind, types):
        periods: list[dict[str, Any]] = []
        for pk, version, content in rows:
            if content is None:
                found = last[1] if last and last[0] == pk else []
            else:
                found = version_facts(indexer.index(orjson.loads(content)))[1]
            last = (pk, found)
            periods.extend({"resource_pk": pk, "version_id": version, **p} for p in found)
        if periods:
            bind.execute(periods_table.insert(), periods)


def downgrade() -> None:
    """Nothing to undo in the schema; the open ends stay (see above)."""
