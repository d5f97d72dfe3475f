"""Per request: who the caller is in FHIR terms, and which Consents may name them.

Read fresh on every request (never cached), so a withdrawn consent stops counting on the very
next request, on every instance behind the load balancer.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import and_, exists, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store.tables import IdxReference, IdxToken, Resource
from .consent import Caller, ConsentRule, parse_consent
from .principal import Principal

RES = Resource.__table__
REF = IdxReference.__table__
TOKEN = IdxToken.__table__


async def _referencing(conn: AsyncConnection, source_type: str, param: str, targets: set[str]) -> list[dict]:
    """Current resources of `source_type` whose `param` points at any of `targets`."""
    if not targets:
        return []
    pairs = [t.split("/", 1) for t in sorted(targets) if "/" in t]
    match = or_(false(), *[and_(REF.c.target_type == t, REF.c.target_id == i) for t, i in pairs])
    stmt = select(RES.c.content).where(
        RES.c.resource_type == source_type, RES.c.deleted == false(),
        exists().where(and_(REF.c.resource_pk == RES.c.pk, REF.c.param == f"{source_type}.{param}",
                            match)))
    return [orjson.loads(row.content) for row in await conn.execute(stmt)]


async def resolve_caller(conn: AsyncConnection, principal: Principal) -> Caller:
    """The references and role codes a Consent's `actor` may use to name this caller."""
    refs: set[str] = set()
    roles: set[str] = {principal.role} if principal.role else set()
    if principal.fhir_user:
        refs.add(principal.fhir_user)
    if principal.client_id:
        refs.add(f"Device/{principal.client_id}")
    practitioner_roles: list[dict] = []
    if principal.fhir_user and principal.fhir_user.startswith("PractitionerRole/"):
        row = (await conn.execute(select(RES.c.content).where(
            RES.c.resource_type == "PractitionerRole",
            RES.c.id == principal.fhir_user.split("/", 1)[1], RES.c.deleted == false()))).first()
        if row is not None:
            practitioner_roles.append(orjson.loads(row.content))
    elif principal.fhir_user and principal.fhir_user.startswith("Practitioner/"):
        practitioner_roles = await _referencing(conn, "PractitionerRole", "practitioner",
                                                {principal.fhir_user})
    for role in practitioner_roles:
        if role.get("active") is False:
            continue
        refs.add(f"PractitionerRole/{role['id']}")
        for key in ("practitioner", "organization"):
            ref = (role.get(key) or {}).get("reference")
            if ref:
                refs.add(ref)
        for code in role.get("code", []):
            roles.update(c["code"] for c in code.get("coding", []) if c.get("code"))
    teams = await _referencing(conn, "CareTeam", "participant", refs)
    refs.update(f"CareTeam/{t['id']}" for t in teams if t.get("status") in (None, "active"))
    return Caller(frozenset(refs), frozenset(roles))


async def load_consents(conn: AsyncConnection, caller: Caller, now: datetime) -> list[ConsentRule]:
    """Active Consents whose provisions (at any depth) name one of the caller's references."""
    pairs = [r.split("/", 1) for r in sorted(caller.references)]
    if not pairs:
        return []
    by_ref = exists().where(and_(
        REF.c.resource_pk == RES.c.pk, REF.c.param == "Consent.any-actor",
        or_(*[and_(REF.c.target_type == t, REF.c.target_id == i) for t, i in pairs])))
    active = exists().where(and_(TOKEN.c.resource_pk == RES.c.pk, TOKEN.c.param == "Consent.status",
                                 TOKEN.c.code == "active"))
    stmt = select(RES.c.content).where(RES.c.resource_type == "Consent", RES.c.deleted == false(),
                                       active, by_ref)
    out = []
    for row in await conn.execute(stmt):
        rule = parse_consent(orjson.loads(row.content), caller, now)
        if rule is not None:
            out.append(rule)
    return out
