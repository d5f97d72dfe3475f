"""Per request, inside the request's own transaction: who the caller is in FHIR terms, and which
Consents may name them.

One statement answers it all (the caller's references and role codes, their CareTeams, the
current versions of the active Consents that name any of those, and the RelatedPerson a
representative acts as). What it answers depends only on resources of the types in
`INPUT_TYPES`, and every write of those bumps the change epoch in the same transaction
(`store.tables.ChangeEpoch`). So each request reads the epoch (one primary-key read) and reuses
what this instance resolved for the same caller at the same epoch; at any other epoch it
resolves again. A withdrawn consent, a retired PractitionerRole or a changed CareTeam therefore
counts from the very next request, on every instance behind the load balancer, while an
unchanged world costs one tiny query. Consent versions are parsed once (`ConsentCache`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    false,
    literal,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store.tables import ChangeEpoch, IdxReference, IdxToken, Resource
from .principal import Principal
from .provisions import ConsentCache, ConsentDoc, read_consent

RES = Resource.__table__
REF = IdxReference.__table__
TOKEN = IdxToken.__table__
NONE = ""
"""Bound where the caller has no such reference: no stored resource has an empty type or id."""


INPUT_TYPES = frozenset({"Consent", "PractitionerRole", "CareTeam", "RelatedPerson"})
"""The resource types a resolution is derived from: the store bumps the change epoch on every
write of one of them (`StoreConfig.watched_types`)."""
EPOCH = ChangeEpoch.__table__
EPOCH_READ = select(EPOCH.c.value).where(EPOCH.c.id == 1)


@dataclass(frozen=True)
class Resolution:
    """Who the caller is and which Consents name them (shared between requests: immutable)."""

    references: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    consents: tuple[ConsentDoc, ...] = ()
    related_person: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    """The RelatedPerson of the token's fhirUser (for a representative), as stored."""
    versions: tuple[tuple[int, int], ...] = ()
    """(pk, version) of the Consents and the RelatedPerson it was read from."""
    patients: frozenset[str] = frozenset()
    """Whose active Consents name the caller (as the database indexes them, whether or not
    they parse as patient-privacy consents): what `predicates.live_patients` finds."""
    standings: dict[Any, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)
    """What the consents say to the caller, per purpose of use (`consent.standing`)."""


class AccessCache:
    """One database's parsed Consents and resolved callers, held by the runtime. A cache only:
    everything in it is checked against the database on every request."""

    def __init__(self, size: int = 10_000) -> None:
        self.consents = ConsentCache()
        self.size = size
        self._callers: OrderedDict[tuple[str | None, ...], tuple[int, Resolution]] = OrderedDict()

    def caller(self, key: tuple[str | None, ...], epoch: int) -> tuple[bool, Resolution | None]:
        """(current, resolution): the caller's last resolution, and whether it was made at
        this epoch."""
        found = self._callers.get(key)
        if found is None:
            return False, None
        self._callers.move_to_end(key)
        return found[0] == epoch, found[1]

    def remember(self, key: tuple[str | None, ...], epoch: int, resolution: Resolution) -> None:
        self._callers[key] = (epoch, resolution)
        self._callers.move_to_end(key)
        while len(self._callers) > self.size:
            self._callers.popitem(last=False)


def _current(resource_type: str) -> Any:
    return (RES.c.resource_type == resource_type) & (RES.c.deleted == false())


def _with_token(param: str, code: str, negate: bool = False) -> Any:
    rows = select(TOKEN.c.resource_pk).where(TOKEN.c.param == param, TOKEN.c.code == code)
    return RES.c.pk.notin_(rows) if negate else RES.c.pk.in_(rows)


def _row(kind: str, a: Any = None, b: Any = None, pk: Any = None, version: Any = None,
         content: Any = None) -> list[Any]:
    """One branch of the answer: (kind, a, b, pk, version, content), NULLs typed for the union."""
    def typed(value: Any, type_: Any) -> Any:
        return cast(null(), type_) if value is None else value
    return [literal(kind, String).label("kind"), typed(a, String).label("a"),
            typed(b, String).label("b"), typed(pk, BigInteger).label("pk"),
            typed(version, Integer).label("version"), typed(content, Text).label("content")]


@lru_cache(maxsize=1)
def statement() -> CompoundSelect[Any]:
    """The caller's world in one query (built once; the values are bound per request)."""
    roles = select(RES.c.pk, RES.c.id).where(
        _current("PractitionerRole"),
        (RES.c.id == bindparam("role_id", type_=String)) | RES.c.pk.in_(
            select(REF.c.resource_pk).where(
                REF.c.param == "PractitionerRole.practitioner",
                REF.c.target_type == "Practitioner",
                REF.c.target_id == bindparam("practitioner_id", type_=String))),
        _with_token("PractitionerRole.active", "false", negate=True),
    ).cte("caller_roles")
    own = union_all(
        select(bindparam("user_type", type_=String).label("rtype"),
               bindparam("user_id", type_=String).label("rid")),
        select(bindparam("client_type", type_=String), bindparam("client_id", type_=String)),
        select(literal("PractitionerRole", String), roles.c.id),
        select(REF.c.target_type, REF.c.target_id).where(
            REF.c.resource_pk.in_(select(roles.c.pk)),
            REF.c.param.in_(["PractitionerRole.practitioner", "PractitionerRole.organization"])),
    ).cte("caller_own_refs")
    teams = select(RES.c.pk, RES.c.id).where(
        _current("CareTeam"),
        RES.c.pk.notin_(select(TOKEN.c.resource_pk).where(
            TOKEN.c.param == "CareTeam.status", TOKEN.c.code != "active")),
        RES.c.pk.in_(select(REF.c.resource_pk).where(
            REF.c.param == "CareTeam.participant",
            tuple_(REF.c.target_type, REF.c.target_id).in_(select(own.c.rtype, own.c.rid)))),
    ).cte("caller_teams")
    refs = union_all(select(own.c.rtype, own.c.rid),
                     select(literal("CareTeam", String), teams.c.id)).cte("caller_refs")
    consents = select(RES.c.pk, RES.c.version_id).where(
        _current("Consent"),
        _with_token("Consent.status", "active"),
        RES.c.pk.in_(select(REF.c.resource_pk).where(
            REF.c.param == "Consent.any-actor",
            tuple_(REF.c.target_type, REF.c.target_id).in_(select(refs.c.rtype, refs.c.rid)))),
    ).cte("caller_consents")
    patient_of = REF.alias("consent_patient")
    consent_rows = select(*_row("consent", b=patient_of.c.target_id, pk=consents.c.pk,
                                version=consents.c.version_id)).select_from(consents.outerjoin(
        patient_of, (patient_of.c.resource_pk == consents.c.pk)
        & (patient_of.c.param == "Consent.patient") & (patient_of.c.target_type == "Patient")))
    role_codes = select(*_row("role", TOKEN.c.system, TOKEN.c.code)).where(
        TOKEN.c.resource_pk.in_(select(roles.c.pk)), TOKEN.c.param == "PractitionerRole.role")
    related = select(*_row("related", pk=RES.c.pk, version=RES.c.version_id,
                           content=RES.c.content)).where(
        _current("RelatedPerson"), RES.c.id == bindparam("related_id", type_=String))
    return union_all(
        select(*_row("ref", refs.c.rtype, refs.c.rid)),
        role_codes,
        consent_rows,
        related,
    )


def _split(reference: str | None, *types: str) -> tuple[str, str]:
    if reference and "/" in reference and reference.split("/", 1)[0] in types:
        rtype, rid = reference.split("/", 1)
        return rtype, rid
    return NONE, NONE


async def resolve(conn: AsyncConnection, principal: Principal,
                  cache: AccessCache) -> tuple[int, Resolution]:
    """The change epoch now, and the caller's references, roles and the active Consents that
    name any of them: as resolved before at this epoch, or resolved now."""
    epoch = int((await conn.execute(EPOCH_READ)).scalar_one())
    key = (principal.fhir_user, principal.client_id, principal.role)
    current, known = cache.caller(key, epoch)
    if current and known is not None:
        return epoch, known
    # Read after the epoch: at worst newer than it, and then the next request resolves again
    # (and `live_patients`, pinned to this epoch, grants nothing meanwhile).
    resolution = await _resolve(conn, principal, cache.consents, known)
    cache.remember(key, epoch, resolution)
    return epoch, resolution


async def _resolve(conn: AsyncConnection, principal: Principal, cache: ConsentCache,
                   previous: Resolution | None) -> Resolution:
    """Read the caller's world; when it is what it was (the epoch moved for someone else's
    change), the previous resolution stands, with what was judged from it."""
    user_type, user_id = _split(principal.fhir_user, "Practitioner", "PractitionerRole",
                                "RelatedPerson", "Patient")
    params = {
        "user_type": user_type, "user_id": user_id,
        "client_type": "Device" if principal.client_id else NONE,
        "client_id": principal.client_id or NONE,
        "role_id": user_id if user_type == "PractitionerRole" else NONE,
        "practitioner_id": user_id if user_type == "Practitioner" else NONE,
        "related_id": user_id if user_type == "RelatedPerson" else NONE,
    }
    references: set[str] = set()
    roles: set[str] = {principal.role} if principal.role else set()
    related: tuple[int, int, str] | None = None
    wanted: list[tuple[int, int]] = []
    patients: set[str] = set()
    for kind, a, b, pk, version, content in await conn.execute(statement(), params):
        if kind == "consent":
            wanted.append((pk, version))
            if b:
                patients.add(b)
        elif kind == "ref" and a and b:
            references.add(f"{a}/{b}")
        elif kind == "role" and b:
            roles.add(b)
        elif kind == "related" and content:
            related = (pk, version, content)
    wanted = sorted(set(wanted))
    versions = tuple(wanted) + ((related[0], related[1]),) if related else tuple(wanted)
    if (previous is not None and previous.versions == versions and previous.patients == patients
            and previous.references == references and previous.roles == roles):
        return previous
    consents = await _consents(conn, wanted, cache)
    return Resolution(frozenset(references), frozenset(roles), tuple(consents),
                      orjson.loads(related[2]) if related else None, versions, frozenset(patients))


async def _consents(conn: AsyncConnection, wanted: list[tuple[int, int]],
                    cache: ConsentCache) -> list[ConsentDoc]:
    """The parsed Consents, reading the content only of versions not parsed before."""
    docs: list[ConsentDoc] = []
    missing: list[int] = []
    for key in wanted:
        known, doc = cache.get(key)
        if not known:
            missing.append(key[0])
        elif doc is not None:
            docs.append(doc)
    if missing:
        rows = await conn.execute(select(RES.c.pk, RES.c.version_id, RES.c.content).where(
            RES.c.pk.in_(missing), RES.c.deleted == false()))
        for row in rows:
            # The version read here may be newer than the one listed (a concurrent change on
            # PostgreSQL's read committed): it is the current one, and cached as what it is.
            doc = read_consent(orjson.loads(row.content))
            cache.put((int(row.pk), int(row.version_id)), doc)
            if doc is not None:
                docs.append(doc)
    return docs
