"""A new resource with all its rows in ONE statement (PostgreSQL): data-modifying CTEs.

`ResourceStore.create` sends the `resource` row (for its pk), then one INSERT per table for the
version, index, compartment, label and fact rows: about ten round trips for a resource of a
type with many search parameters, such as the AuditEvent every read writes. Here the same rows
go as one `WITH r AS (INSERT INTO resource ... RETURNING pk), i0 AS (INSERT INTO ... SELECT
r.pk, $1, $2 FROM r UNION ALL ...) ... SELECT pk FROM r`: the database does the same work,
the request waits for one answer instead of ten. The rows themselves are built by the store
exactly as for `create` (`ResourceStore.create_at_once`); only how they are sent differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, cast, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

PLACEHOLDER_PK = -1
"""What the store's row builders are given as the resource's pk; replaced by `r.pk`."""


Shape = tuple[tuple[str, tuple[str, ...], int], ...]
"""Per dependent table: its name, the columns given, the number of rows."""


@lru_cache(maxsize=256)
def _statement(resource_table: Table, resource_cols: tuple[str, ...], shape: Shape) -> Any:
    """The statement for rows of this shape, with a bind parameter per value: built once per
    shape, so SQLAlchemy compiles it once (its compiled cache) and only the values change."""
    tables = resource_table.metadata.tables
    r = insert(resource_table).values(
        {c: bindparam(f"r_{c}", type_=resource_table.c[c].type) for c in resource_cols}
    ).returning(resource_table.c.pk).cte("r")
    ctes = []
    for n, (name, cols, count) in enumerate(shape):
        table = tables[name]
        rows = [select(r.c.pk, *[cast(bindparam(f"t{n}_{i}_{c}", type_=table.c[c].type),
                                      table.c[c].type) for c in cols]) for i in range(count)]
        picked = rows[0] if count == 1 else union_all(*rows)
        ctes.append(insert(table).from_select(["resource_pk", *cols], picked).cte(f"i{n}"))
    stmt = select(r.c.pk)
    return stmt.add_cte(*ctes) if ctes else stmt


async def insert_resource(conn: AsyncConnection, resource_table: Table, row: Mapping[str, Any],
                          dependents: Sequence[tuple[Table, list[dict[str, Any]]]]) -> int:
    """Insert `row` into `resource_table` and every dependent row (their `resource_pk` the new
    row's pk) in one statement; returns that pk."""
    params: dict[str, Any] = {f"r_{c}": v for c, v in row.items()}
    shape = []
    for n, (table, rows) in enumerate((t, r) for t, r in dependents if r):
        cols = tuple(c for c in rows[0] if c != "resource_pk")
        shape.append((table.name, cols, len(rows)))
        for i, item in enumerate(rows):
            params.update({f"t{n}_{i}_{c}": item[c] for c in cols})
    stmt = _statement(resource_table, tuple(row), tuple(shape))
    return int((await conn.execute(stmt, params)).scalar_one())
