"""Compartments inherited through references: a resource of an inheriting type (a Provenance,
through `Provenance.target`; the CompartmentDefinition extension `compartment-inherit`) belongs
to the records of what it references, and carries their security labels: it tells about them,
so it is as protected as they are.

Both directions are kept: a new inheriting resource joins the records its targets are in now
(`inherited`), and a resource that joins a record brings the inheriting resources written
before it along (`propagate`: a Provenance written before its target, with a client-chosen id or
earlier in the same transaction), down a chain of Provenances of Provenances.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, and_, exists, insert, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import Compartment, IdxReference, Resource, ResourceLabel

RES = cast(Table, Resource.__table__)
REF = cast(Table, IdxReference.__table__)
COMP = cast(Table, Compartment.__table__)
LABEL = cast(Table, ResourceLabel.__table__)
MAX_CHAIN = 8


async def inherited(conn: AsyncConnection, targets: Iterable[tuple[str, str]]
                    ) -> tuple[set[str], set[tuple[str, str]]]:
    """The patients whose records the resources (type, id) are in, and their labels."""
    pairs = sorted(set(targets))
    if not pairs:
        return set(), set()
    t = RES.alias("inherit_target")
    found = select(t.c.pk).where(tuple_(t.c.resource_type, t.c.id).in_(pairs))
    patients = {r.patient_id for r in await conn.execute(
        select(COMP.c.patient_id).where(COMP.c.resource_pk.in_(found)).distinct())}
    labels = {(r.system, r.code) for r in await conn.execute(
        select(LABEL.c.system, LABEL.c.code).where(LABEL.c.resource_pk.in_(found)).distinct())}
    return patients, labels


async def propagate(conn: AsyncConnection, keys: list[str], joined: set[int]) -> None:
    """Resources `joined` a record: the resources that reference them through the inheriting
    parameters `keys` join it too, with the labels. Labels added here are in the access tables,
    not in the stored content (that would take a new version): protection grows, the record
    does not change."""
    for _ in range(MAX_CHAIN):
        if not keys or not joined:
            return
        i, t = REF.alias("pi"), RES.alias("pt")
        about = select(i.c.resource_pk.label("pk"), t.c.pk.label("target")).join(
            t, and_(t.c.resource_type == i.c.target_type, t.c.id == i.c.target_id)).where(
            t.c.pk.in_(sorted(joined)), i.c.param.in_(keys)).subquery("about")
        c, x = COMP.alias("pc"), COMP.alias("px")
        patients = (await conn.execute(select(about.c.pk, c.c.patient_id).distinct().join(
            c, c.c.resource_pk == about.c.target).where(not_(exists().where(
                x.c.resource_pk == about.c.pk, x.c.patient_id == c.c.patient_id))))).all()
        lab, y = LABEL.alias("pl"), LABEL.alias("py")
        labels = (await conn.execute(select(about.c.pk, lab.c.system, lab.c.code).distinct(
        ).join(lab, lab.c.resource_pk == about.c.target).where(not_(exists().where(
            y.c.resource_pk == about.c.pk, y.c.system == lab.c.system,
            y.c.code == lab.c.code))))).all()
        if labels:
            await conn.execute(insert(LABEL), [
                {"resource_pk": pk, "system": system, "code": code} for pk, system, code in labels])
        if not patients:
            return
        await conn.execute(insert(COMP), [{"resource_pk": pk, "patient_id": patient}
                                          for pk, patient in patients])
        joined = {pk for pk, _ in patients}
