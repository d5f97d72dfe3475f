"""`_include` and `_revinclude` (with `:iterate`), each one query guarded by the access policy.

Included resources pass through the same visibility predicate as matches, so `_include` can
never bring in a resource the caller could not have read directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, exists, false, select

from ..records import StoredResource
from ..tables import INDEX_TABLES, Resource
from .request import IncludeSpec

RES = Resource.__table__
REF = INDEX_TABLES["reference"]
MAX_ITERATIONS = 4
# Fixed aliases (see `repository.R`): the access predicate over T and S is built once.
T = RES.alias("t")
S = RES.alias("s")
M = RES.alias("m")
REFS = REF.alias("i")


class IncludeResolver:
    def __init__(self, query: Callable[[Any], Awaitable[Any]], config: Any, access: Any) -> None:
        self.query = query
        """Runs a guarded statement with the access policy's bound values."""
        self.registry = config.registry
        self.limit = config.max_include
        self.access = access

    async def resolve(self, matches: list[StoredResource], include: list[IncludeSpec],
                      revinclude: list[IncludeSpec]) -> list[StoredResource]:
        if not matches or not (include or revinclude):
            return []
        seen = {m.pk for m in matches}
        found: list[StoredResource] = []
        frontier = matches
        first = True
        for _ in range(MAX_ITERATIONS):
            batch: list[StoredResource] = []
            for spec in include + revinclude:
                if not first and not spec.iterate:
                    continue
                sources = [m for m in frontier if m.resource_type == spec.source_type] \
                    if not spec.reverse else frontier
                if not sources:
                    continue
                rows = await (self._reverse(spec, sources) if spec.reverse
                              else self._forward(spec, sources))
                for row in rows:
                    if row.pk not in seen and len(found) + len(batch) < self.limit:
                        seen.add(row.pk)
                        batch.append(row)
            if not batch:
                break
            found.extend(batch)
            frontier = batch
            first = False
        return found

    def _keys(self, spec: IncludeSpec) -> list[str]:
        if spec.param is not None:
            return [spec.param.key]
        return [p.key for p in self.registry.for_type(spec.source_type).values()
                if p.type == "reference"]

    async def _forward(self, spec: IncludeSpec, sources: list[StoredResource]) -> list[
            StoredResource]:
        t, i = T, REFS
        conds: list[Any] = [
            i.c.resource_pk.in_([s.pk for s in sources]),
            i.c.param.in_(self._keys(spec)),
            i.c.target_type == t.c.resource_type,
            i.c.target_id == t.c.id,
        ]
        if spec.target_type:
            conds.append(i.c.target_type == spec.target_type)
        return await self._fetch(t, exists().where(and_(*conds)))

    async def _reverse(self, spec: IncludeSpec, targets: list[StoredResource]) -> list[
            StoredResource]:
        s, i, m = S, REFS, M
        conds = [
            i.c.resource_pk == s.c.pk,
            i.c.param.in_(self._keys(spec)),
            m.c.pk.in_([t.pk for t in targets]),
            i.c.target_type == m.c.resource_type,
            i.c.target_id == m.c.id,
        ]
        where = and_(s.c.resource_type == spec.source_type, exists().where(and_(*conds)))
        return await self._fetch(s, where)

    async def _fetch(self, t: Any, where: Any) -> list[StoredResource]:
        stmt = select(t).where(where, t.c.deleted == false()).order_by(t.c.pk).limit(self.limit)
        predicate = self.access.visible(t.c.pk, t.c.resource_type)
        if predicate is not None:
            stmt = stmt.where(predicate)
        rows = (await self.query(stmt)).mappings()
        return [StoredResource(r["pk"], r["resource_type"], r["id"], r["version_id"],
                               r["last_updated"], r["content"]) for r in rows]
