"""What data migrations that recompute facts from stored versions share.

Migrations 0006, 0008 and 0009 each read every stored version (of some types) in key order,
batch by batch, and derive rows from its content with the code and profiles the server runs
with. Reading in (resource, version) order matters: a deletion has no content and takes the
facts of the version before it, as `ResourceStore.delete` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import Connection

from .searchparams import SearchParamRegistry

BATCH = 1000

StoredVersion = tuple[int, int, bytes | str | None]
"""(resource_pk, version_id, content); content is None for a deletion."""


def has_versions(bind: Connection) -> bool:
    """False on a new database: a data migration then has nothing to read and loads nothing."""
    return bind.execute(sa.text("SELECT 1 FROM resource_version LIMIT 1")).first() is not None


def server_registry() -> SearchParamRegistry:
    """The search parameters of the profiles the server runs with (`PGO_WORK_PROFILES_DIR`)."""
    from ..config import get_settings
    from ..conformance.package import load_package

    package = load_package(get_settings().profiles_dir)
    return SearchParamRegistry(package.of_type("SearchParameter"), package.patient_compartment)


def versions_in_order(bind: Connection, types: Sequence[str] | None = None,
                      batch: int = BATCH) -> Iterator[list[StoredVersion]]:
    """Every stored version (of `types`, or all), ordered by resource and version, in batches
    read by key (never OFFSET), so memory stays one batch whatever the table's size."""
    where = "(resource_pk > :p OR (resource_pk = :p AND version_id > :v))"
    stmt = sa.text(
        "SELECT resource_pk, version_id, content FROM resource_version WHERE "
        + (f"resource_type IN :types AND {where}" if types is not None else where)
        + " ORDER BY resource_pk, version_id LIMIT :n")
    if types is not None:
        stmt = stmt.bindparams(sa.bindparam("types", list(types), expanding=True))
    after = (0, 0)
    while True:
        rows = [(r[0], r[1], r[2]) for r in bind.execute(
            stmt, {"p": after[0], "v": after[1], "n": batch}).all()]
        if not rows:
            return
        yield rows
        after = (rows[-1][0], rows[-1][1])
