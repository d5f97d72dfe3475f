"""Per request, inside the request's own transaction: who the caller is in FHIR terms, and which
Consents may name them.

One statement answers it all (the caller's references and role codes, their CareTeams, the
current versions of the active Consents that name any of those, the RelatedPerson a
representative acts as, and the change epochs of the caller's references). What it answers
depends only on resources of the types in `WATCHED` that name one of those references, and
every write of those bumps the change epoch of each reference it names, before and after, in
the same transaction (`store.tables.ChangeEpoch`). So each request reads the sum of its
references' epochs (one indexed read) and reuses what this instance resolved for the caller if
the sum is unchanged; otherwise it resolves again. A withdrawn consent, a retired
PractitionerRole or a changed CareTeam therefore counts from the very next request, on every
instance behind the load balancer, while other people's changes cost nothing. Consent
versions are parsed once (`ConsentCache`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    cast,
    false,
    func,
    literal,
    null,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store.tables import ChangeEpoch, Compartment, IdxReference, IdxToken, Resource
from .predicates import epoch_of
from .principal import Principal, known_roles
from .provisions import PROFESSIONAL_ROLES, ConsentCache, ConsentDoc, read_consent, rules

UNKNOWN_ROLE = "unknown"
"""The `roles` entry of `profiles/rules/access-rules.json` for a role no one defined."""

RES = Resource.__table__
REF = IdxReference.__table__
COMP = Compartment.__table__
TOKEN = IdxToken.__table__
NONE = ""
"""Bound where the caller has no such reference: no stored resource has an empty type or id."""


WATCHED: dict[str, tuple[str, ...]] = {
    "Consent": ("Consent.any-actor",),
    "PractitionerRole": ("PractitionerRole.practitioner", "PractitionerRole.organization"),
    "CareTeam": ("CareTeam.participant",),
    "RelatedPerson": (),
}
"""What a resolution is derived from: per type, the reference parameters through which a
resource names the callers it matters to (besides itself). The store bumps their change epochs
on every write (`StoreConfig.watched`)."""
EPOCH = ChangeEpoch.__table__
REFS = "refs"
GENERIC_PLANS = func.set_config("plan_cache_mode", "force_generic_plan", true())
CUSTOM_PLANS = func.set_config("plan_cache_mode", "auto", true())
"""PostgreSQL, for the rest of this transaction (SET LOCAL): use each prepared statement's
generic plan. A consent-guarded statement has nested per-row checks, and PostgreSQL would
otherwise plan it anew for every execution (a custom plan: about 1 ms each, measured, against
0.25 ms to run it); the generic plan is made once per statement and connection. Only the
requests of callers under consent are affected."""


@lru_cache(maxsize=4)
def _epoch_read(dialect: str) -> Select[Any]:
    return select(epoch_of(REFS), GENERIC_PLANS) if dialect == "postgresql" else select(
        epoch_of(REFS))


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
    epoch: int = 0
    """The sum of the change epochs of `references` it was read at (`epoch_of`)."""
    patients: frozenset[str] = frozenset()
    """Whose active Consents name the caller, whether or not they read as patient-privacy
    consents: what `predicates.live_patients` finds."""
    scoped: frozenset[tuple[str, str]] = frozenset()
    """(patient, CareTeam/<id>): a team in that patient's record the caller takes part in,
    which names them for that patient's consents only."""

    @property
    def watched(self) -> list[str]:
        """Every reference whose change epoch the resolution holds by."""
        return sorted(self.references | {ref for _, ref in self.scoped})
    standings: dict[Any, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)
    """What the consents say to the caller, per purpose of use (`consent.standing`)."""


class AccessCache:
    """One database's parsed Consents and resolved callers, held by the runtime. A cache only:
    everything in it is checked against the database on every request."""

    def __init__(self, size: int = 10_000) -> None:
        self.consents = ConsentCache()
        self.size = size
        self._callers: OrderedDict[tuple[str | None, ...], Resolution] = OrderedDict()

    def caller(self, key: tuple[str | None, ...]) -> Resolution | None:
        """The caller's last resolution, whatever its epoch."""
        found = self._callers.get(key)
        if found is not None:
            self._callers.move_to_end(key)
        return found

    def remember(self, key: tuple[str | None, ...], resolution: Resolution) -> None:
        self._callers[key] = resolution
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
    mine = (RES.c.id == bindparam("role_id", type_=String)) | RES.c.pk.in_(
        select(REF.c.resource_pk).where(
            REF.c.param == "PractitionerRole.practitioner",
            REF.c.target_type == "Practitioner",
            REF.c.target_id == bindparam("practitioner_id", type_=String)))
    roles = select(RES.c.pk, RES.c.id).where(
        _current("PractitionerRole"), mine,
        _with_token("PractitionerRole.active", "false", negate=True),
    ).cte("caller_roles")
    # Every PractitionerRole of the caller, active or not: a restricting role code holds even
    # when its role was deactivated or ended (`restricting_roles`).
    held = select(RES.c.pk).where(_current("PractitionerRole"), mine).cte("caller_held_roles")
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
    # A team in a patient's record (the work CareTeam the patient keeps) names its members for
    # that patient's consents only: whoever wrote it there speaks for that record, no other.
    record_teams = select(teams.c.id, COMP.c.patient_id).where(
        COMP.c.resource_pk == teams.c.pk).cte("caller_record_teams")
    refs = union_all(select(own.c.rtype, own.c.rid),
                     select(literal("CareTeam", String), teams.c.id).where(
                         teams.c.pk.notin_(select(COMP.c.resource_pk)))).cte("caller_refs")
    actor, of = REF.alias("team_actor"), REF.alias("team_consent_patient")
    by_record_team = select(actor.c.resource_pk).join(
        record_teams, (actor.c.target_type == "CareTeam") & (actor.c.target_id == record_teams.c.id)
    ).join(of, (of.c.resource_pk == actor.c.resource_pk) & (of.c.param == "Consent.patient")
           & (of.c.target_type == "Patient") & (of.c.target_id == record_teams.c.patient_id)
           ).where(actor.c.param == "Consent.any-actor")
    consents = select(RES.c.pk, RES.c.version_id).where(
        _current("Consent"),
        _with_token("Consent.status", "active"),
        RES.c.pk.in_(select(REF.c.resource_pk).where(
            REF.c.param == "Consent.any-actor",
            tuple_(REF.c.target_type, REF.c.target_id).in_(select(refs.c.rtype, refs.c.rid))))
        | RES.c.pk.in_(by_record_team),
    ).cte("caller_consents")
    consent_rows = select(*_row("consent", pk=consents.c.pk, version=consents.c.version_id))
    role_codes = select(*_row("role", TOKEN.c.system, TOKEN.c.code)).where(
        TOKEN.c.resource_pk.in_(select(roles.c.pk)), TOKEN.c.param == "PractitionerRole.role")
    held_codes = select(*_row("held", TOKEN.c.system, TOKEN.c.code)).where(
        TOKEN.c.resource_pk.in_(select(held.c.pk)), TOKEN.c.param == "PractitionerRole.role")
    related = select(*_row("related", pk=RES.c.pk, version=RES.c.version_id,
                           content=RES.c.content)).where(
        _current("RelatedPerson"), RES.c.id == bindparam("related_id", type_=String))
    epochs = select(*_row("epoch", pk=cast(func.coalesce(func.sum(EPOCH.c.value), 0), BigInteger))
                    ).where(EPOCH.c.ref.in_(union_all(
                        select(refs.c.rtype + "/" + refs.c.rid),
                        select(literal("CareTeam/", String) + record_teams.c.id))))
    return union_all(
        select(*_row("ref", refs.c.rtype, refs.c.rid)),
        select(*_row("scoped", record_teams.c.id, record_teams.c.patient_id)),
        epochs,
        role_codes,
        held_codes,
        consent_rows,
        related,
    )


def known_role(role: str) -> str:
    """The role as the access rules treat it: a role neither the base roles nor the
    professional-role CodeSystem define is `unknown`, which gets the most restrictive rules."""
    return role if role in known_roles() else UNKNOWN_ROLE


@lru_cache(maxsize=1)
def restricting_roles() -> frozenset[str]:
    """Roles with a rule that restricts (`never`, `explicitOnly`, `only`): they count from
    every PractitionerRole of the caller, active or not, so deactivating one never lifts them."""
    return frozenset(r for r, rule in rules()["roles"].items()
                     if rule.get("never") or rule.get("explicitOnly") or "only" in rule)


def _split(reference: str | None, *types: str) -> tuple[str, str]:
    if reference and "/" in reference and reference.split("/", 1)[0] in types:
        rtype, rid = reference.split("/", 1)
        return rtype, rid
    return NONE, NONE


async def resolve(conn: AsyncConnection, principal: Principal, cache: AccessCache) -> Resolution:
    """The caller's references, roles and the active Consents that name any of them: as
    resolved before, while none of that caller's references changed since, or resolved now."""
    key = (principal.fhir_user, principal.client_id, principal.role)
    known = cache.caller(key)
    dialect = conn.dialect.name
    if known is not None:
        found = await conn.execute(_epoch_read(dialect), {REFS: known.watched})
        if int(found.scalar_one()) == known.epoch:
            return known
        if dialect == "postgresql":  # the resolution itself wants a plan for its values
            await conn.execute(select(CUSTOM_PLANS))
    resolution = await _resolve(conn, principal, cache.consents, known)
    if dialect == "postgresql":
        await conn.execute(select(GENERIC_PLANS))
    cache.remember(key, resolution)
    return resolution


async def _resolve(conn: AsyncConnection, principal: Principal, cache: ConsentCache,
                   previous: Resolution | None) -> Resolution:
    """Read the caller's world; when it is what it was (a change named one of the caller's
    references without changing what concerns them: another practitioner's role at their
    organisation, a consent saved again unchanged), the previous resolution stands, with what
    was judged from it."""
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
    scoped: set[tuple[str, str]] = set()
    roles: set[str] = {known_role(principal.role)} if principal.role else set()
    related: tuple[int, int, str] | None = None
    wanted: list[tuple[int, int]] = []
    epoch = 0
    for kind, a, b, pk, version, content in await conn.execute(statement(), params):
        if kind == "epoch":
            epoch = int(pk)
        elif kind == "consent":
            wanted.append((pk, version))
        elif kind == "ref" and a and b:
            references.add(f"{a}/{b}")
        elif kind == "scoped" and a and b:
            scoped.add((b, f"CareTeam/{a}"))
        elif kind in ("role", "held") and b and a == PROFESSIONAL_ROLES:
            role = known_role(b)
            if kind == "role" or role in restricting_roles():
                roles.add(role)
        elif kind == "related" and content:
            related = (pk, version, content)
    wanted = sorted(set(wanted))
    versions = tuple(wanted) + ((related[0], related[1]),) if related else tuple(wanted)
    if (previous is not None and previous.versions == versions
            and previous.references == references and previous.roles == roles
            and previous.scoped == scoped):
        return replace(previous, epoch=epoch)  # what was judged from it stands
    consents, unread = await _consents(conn, wanted, cache)
    patients = {doc.patient for doc in consents} | await _patients_of(conn, unread)
    return Resolution(frozenset(references), frozenset(roles), tuple(consents),
                      orjson.loads(related[2]) if related else None, versions, epoch,
                      frozenset(patients), frozenset(scoped))


async def _patients_of(conn: AsyncConnection, consents: list[int]) -> set[str]:
    """The patients the index gives for Consents that are not patient-privacy consents as
    read (another scope, no provision, a reference of another form): the live lookup finds them
    too, so they must be known to be left out."""
    if not consents:
        return set()
    rows = await conn.execute(select(REF.c.target_id).where(
        REF.c.resource_pk.in_(consents), REF.c.param == "Consent.patient",
        REF.c.target_type == "Patient"))
    return {r.target_id for r in rows if r.target_id}


async def _consents(conn: AsyncConnection, wanted: list[tuple[int, int]],
                    cache: ConsentCache) -> tuple[list[ConsentDoc], list[int]]:
    """The parsed Consents, reading the content only of versions not parsed before; and the
    pks of those that are no patient-privacy consent to us."""
    docs: list[ConsentDoc] = []
    missing: list[int] = []
    unread: list[int] = []
    for key in wanted:
        known, doc = cache.get(key)
        if not known:
            missing.append(key[0])
        elif doc is not None:
            docs.append(doc)
        else:
            unread.append(key[0])
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
            else:
                unread.append(int(row.pk))
    return docs, unread
