"""Change epochs (`tables.ChangeEpoch`): a counter per reference, bumped with every write of a
watched resource that names it, so that what is derived from those resources for someone can be
checked for staleness with one indexed read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import ChangeEpoch, IdxReference

EPOCH = cast(Table, ChangeEpoch.__table__)
REF = cast(Table, IdxReference.__table__)


def named(rtype: str, rid: str, reference_rows: Iterable[Mapping[str, Any]],
          keys: tuple[str, ...]) -> set[str]:
    """The references a watched resource names through `keys`, and itself."""
    return {f"{rtype}/{rid}"} | {f"{r['target_type']}/{r['target_id']}" for r in reference_rows
                                 if r["param"] in keys and r["target_type"] and r["target_id"]}


async def named_now(conn: AsyncConnection, pk: int, keys: tuple[str, ...]) -> set[str]:
    """What the stored version of a watched resource names through `keys` (before a change)."""
    if not keys:
        return set()
    rows = await conn.execute(select(REF.c.target_type, REF.c.target_id).where(
        REF.c.resource_pk == pk, REF.c.param.in_(keys)))
    return {f"{t}/{i}" for t, i in rows if t and i}


async def bump(conn: AsyncConnection, refs: set[str]) -> None:
    """+1 for each reference (created at 1), in a fixed order so that two transactions never
    wait for each other's rows."""
    if not refs:
        return
    insert_for = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert_for(EPOCH).values([{"ref": ref, "value": 1} for ref in sorted(refs)])
    await conn.execute(stmt.on_conflict_do_update(index_elements=[EPOCH.c.ref],
                                                  set_={"value": EPOCH.c.value + 1}))
