"""The patient's own Consents, compiled per request into the SQL of every query.

A professional sees patient data only through an active permit provision that names them (as
Practitioner, PractitionerRole, Organization, CareTeam, or narrowed by role). Provisions narrow
by resource type (`class`), data category (`securityLabel`), `code`, `period`, `dataPeriod` and
`purpose`; nested provisions are exceptions to their parent (R4 Consent.provision.provision).
Rules in `profiles/rules/access-rules.json` hold whatever a consent says: an employer never
receives anything labelled medical, a labour expert only through a provision that names medical.

The decision is a plan (`predicates`) over the `compartment`, `resource_label` and index tables,
so searches, totals, paging, includes, chains, `_has` and history all see the same filtered
rows. A representative (a RelatedPerson the patient recorded as guardian or attorney) acts as
the patient for that one record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection

from ..fhir import dates
from ..fhir.outcome import FhirError
from ..store.access import PolicyBase, WriteIntent
from . import predicates as P
from .principal import Principal
from .provisions import Caller, ConsentRule, Provision, judge, rules
from .purpose import request_purposes
from .representative import represented_patient
from .resolve import AccessCache, Resolution, resolve

PREFIX = "consent_"


# -- provisions as plans -------------------------------------------------------------------
def _node_filter(node: Provision, action: str, caller: Caller) -> P.Plan:
    """The rows a node's constraints cover (its own type decides what covering means)."""
    if not node.applies or not node.active:
        return P.FALSE
    if node.actions is not None and action not in node.actions:
        return P.FALSE
    clauses: list[P.Plan] = []
    if node.types is not None:
        clauses.append(P.type_in(node.types))
    elif node.type == "permit":
        clauses.append(P.type_not_in(rules()["notByBroadGrant"]))
    if node.labels is not None:
        # a permit must grant every data category the resource carries; a deny takes away
        # whatever carries any of its categories
        clauses.append(P.labels_within(node.labels) if node.type == "permit"
                       else P.labels_any(node.labels))
    elif node.type == "permit":
        clauses.append(P.negate(P.labels_any(caller.rule_codes("explicitOnly"))))
    if node.codes is not None:
        clauses.append(P.coded(node.codes))
    if node.data_period is not None:
        clauses.append(P.data_between(*node.data_period))
    return P.all_of(*clauses)


def _permits(node: Provision, action: str, caller: Caller, parent_permits: bool) -> P.Plan:
    """Rows for which this node (with its exceptions) ends in permit."""
    permits_here = (node.type == "permit") if node.type else parent_permits
    covered = _node_filter(node, action, caller)
    if permits_here:
        if not node.named:
            return P.FALSE
        vetoes = [_denies(c, action, caller, True) for c in node.children]
        return P.all_of(covered, *[P.negate(v) for v in vetoes])
    grants = [_permits(c, action, caller, False) for c in node.children]
    return P.all_of(covered, P.any_of(*grants))


def _denies(node: Provision, action: str, caller: Caller, parent_permits: bool) -> P.Plan:
    """Rows for which this node (with its exceptions) ends in deny."""
    permits_here = (node.type == "permit") if node.type else parent_permits
    covered = _node_filter(node, action, caller)
    if not permits_here:
        carve_outs = [_permits(c, action, caller, False) for c in node.children]
        return P.all_of(covered, *[P.negate(c) for c in carve_outs])
    return P.all_of(covered, P.any_of(*[_denies(c, action, caller, True) for c in node.children]))


LIVE_FROM = 64
"""From this many patients on, the largest group is looked up in the database per row
(`predicates.live_patients`) instead of sending its patients with every query."""


def read_plan(caller: Caller, consents: list[ConsentRule],
              named_by: frozenset[str] = frozenset()) -> tuple[P.Plan, dict[str, list[str]], bool]:
    """What the caller may read, the patients each part of it is about, and whether the plan
    looks the largest group up live (then it needs the references and the epoch bound too).

    A professional may hold consents from hundreds of patients, mostly alike: patients whose
    consents say the same thing to this caller form one group, one term of the plan with the
    patients as one bound list. Groups are ordered by what they say, so callers with alike
    consents get the same plan (and the same compiled statement). `named_by` is every patient
    whose active Consent the database finds naming the caller: the live lookup of the largest
    group is that set less everyone in another group or in none."""
    by_patient: dict[str, list[ConsentRule]] = {}
    for rule in consents:
        by_patient.setdefault(rule.patient, []).append(rule)
    groups: dict[tuple[Any, ...], list[str]] = {}
    for patient, patient_rules in sorted(by_patient.items()):
        key = tuple(sorted((r.signature for r in patient_rules), key=hash))
        groups.setdefault(key, []).append(patient)
    grants: dict[tuple[Any, ...], P.Plan] = {}
    for key, patients in groups.items():
        patient_rules = by_patient[patients[0]]
        parts = [_permits(r.root, "read", caller, False) for r in patient_rules]
        if any(r.grants_read for r in patient_rules):
            # Whoever may see part of a record may see whose record it is.
            parts.append(P.type_is("Patient"))
        grants[key] = P.any_of(*parts)
    granting = {k: g for k, g in grants.items() if g != P.FALSE}
    largest = max(granting, key=lambda k: len(groups[k]), default=None)
    live = largest is not None and len(groups[largest]) >= LIVE_FROM
    terms: list[P.Plan] = []
    values: dict[str, list[str]] = {}
    for key in sorted(granting, key=repr):
        if live and key == largest:
            others = sorted(named_by - set(groups[key]))
            values[f"{PREFIX}not_live"] = others
            members = P.all_of(P.live_patients(f"{PREFIX}refs", f"{PREFIX}epoch"),
                               P.negate(P.in_patients(f"{PREFIX}not_live")))
        else:
            name = f"{PREFIX}g{len(values)}"
            values[name] = groups[key]
            members = P.in_patients(name)
        terms.append(P.all_of(members, granting[key]))
    never = caller.rule_codes("never")
    plan = P.all_of(P.any_of(*terms, P.negate(P.IN_RECORD)), P.negate(P.labels_any(never)))
    return plan, values, live


@dataclass(frozen=True)
class Standing:
    """What a caller's consents say to them, from `low` until just before `high` (the next
    moment a provision's period starts or ends): the judged consents, the read plan and its
    values. Kept with the resolution it came from, so an unchanged world is judged once."""

    consents: tuple[ConsentRule, ...]
    plan: P.Plan
    values: dict[str, list[str]]
    live: bool
    """Whether the plan looks its largest group up live (`read_plan`)."""
    granting: dict[str, tuple[str, ...]]
    """patient -> the Consents that grant this caller anything (for the audit record)."""
    low: datetime
    high: datetime


def standing(found: Resolution, caller: Caller, now: datetime) -> Standing:
    memo = found.standings.get(caller)
    if memo is not None and memo.low <= now < memo.high:
        return memo
    consents = tuple(judge(doc, caller, now) for doc in found.consents)
    plan, values, live = read_plan(caller, list(consents), found.patients)
    granting: dict[str, list[str]] = {}
    for rule in consents:
        if rule.grants_read or rule.grants_write:
            granting.setdefault(rule.patient, []).append(rule.id)
    bounds = [b for doc in found.consents for b in doc.boundaries]
    result = Standing(consents, plan, values, live,
                      {p: tuple(sorted(set(ids))) for p, ids in granting.items()},
                      max((b for b in bounds if b <= now), default=dates.MIN_DT),
                      min((b for b in bounds if b > now), default=dates.MAX_DT))
    if len(found.standings) >= 16:
        found.standings.clear()
    found.standings[caller] = result
    return result


# -- the policy ----------------------------------------------------------------------------
class ConsentPolicy(PolicyBase):
    """Access for a professional (or system client acting as one): deny by default, permit
    through the patient's Consents, never past the rules that no consent overrides.

    Unusable until `open` has read the caller's world in the request's transaction."""

    def __init__(self, principal: Principal, cache: AccessCache) -> None:
        self.principal = principal
        self.cache = cache
        self.caller = Caller(frozenset(), frozenset(), request_purposes(principal))
        self.consents: tuple[ConsentRule, ...] = ()
        self.represents: str | None = None
        """The patient this caller represents (guardian, attorney), when the record says so."""
        self.plan: P.Plan = P.FALSE
        self.values: dict[str, Any] = {}
        self.granting: dict[str, tuple[str, ...]] = {}
        self.write_consents: dict[str, set[str]] = {}
        """patient -> the Consents that permitted this request's writes (for Provenance)."""
        self._opened = False

    async def open(self, conn: AsyncConnection) -> None:
        epoch, found = await resolve(conn, self.principal, self.cache)
        self.caller = Caller(frozenset(found.references), frozenset(found.roles),
                             self.caller.purposes)
        now = dates.utcnow()
        self.represents = represented_patient(self.principal, found.related_person, now)
        if self.represents is not None:
            self.plan = P.any_of(P.in_patients(f"{PREFIX}self"), P.negate(P.IN_RECORD))
            self.values = {f"{PREFIX}self": [self.represents]}
        else:
            now_standing = standing(found, self.caller, now)
            self.consents, self.plan = now_standing.consents, now_standing.plan
            self.values, self.granting = dict(now_standing.values), now_standing.granting
            if now_standing.live:
                self.values[f"{PREFIX}refs"] = sorted(self.caller.references)
                self.values[f"{PREFIX}epoch"] = epoch
        self._opened = True

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.values

    def consent_ids(self, patient: str) -> list[str]:
        """The patient's consents that grant this caller anything (recorded in the audit)."""
        return list(self.granting.get(patient, ()))

    def visible(self, pk: Any, resource_type: Any) -> ColumnElement[bool] | None:
        if not self._opened:
            raise RuntimeError("ConsentPolicy used before open(): the store opens it")
        return P.predicate(self.plan, pk, resource_type)

    def may_read(self, patient: str, resource_type: str, categories: frozenset[str]) -> bool:
        """Python twin of the read predicate for a resource that may or may not exist: true
        only when a permit covers all of it (a permit narrowed to codes or a data period covers
        part, so it does not count) and no exception could take part of it away."""
        if self.represents is not None:
            return patient == self.represents
        if categories & self.caller.rule_codes("never"):
            return False
        return any(self._write_permitted(rule.root, resource_type, set(categories), False, "read")
                   for rule in self.consents if rule.patient == patient)

    def check_write(self, intent: WriteIntent) -> None:
        """Writes into a patient's record need a write permit covering what is written."""
        if self.represents is not None:
            if not intent.patients or not intent.patients <= {self.represents}:
                raise FhirError(403, "forbidden", "A representative writes only in the record of "
                                "the patient they represent")
            return
        if intent.resource_type == "Consent":
            raise FhirError(403, "forbidden", "Only the patient can create or change their consents")
        if not intent.patients:
            return
        system = rules()["dataCategorySystem"]
        categories = {code for sys, code in intent.labels if sys == system}
        if categories & self.caller.rule_codes("never"):
            raise FhirError(403, "forbidden", "This role may not record data of that category")
        for patient in intent.patients:
            permitting = {rule.id for rule in self.consents if rule.patient == patient
                          and self._write_permitted(rule.root, intent.resource_type, categories, False)}
            if not permitting:
                raise FhirError(403, "forbidden",
                                f"No consent of Patient/{patient} permits you to write this")
            self.write_consents.setdefault(patient, set()).update(permitting)

    def consents_for_writes(self, patient: str) -> list[str]:
        """The Consents under which this request wrote into the patient's record."""
        return sorted(self.write_consents.get(patient, ()))

    def _write_permitted(self, node: Provision, rtype: str, categories: set[str],
                         parent_permits: bool, action: str = "write") -> bool:
        """Python twin of `_permits` for one resource about to be written (or, with action
        read, for every resource of a kind: `may_read`)."""
        permits_here = (node.type == "permit") if node.type else parent_permits
        if not self._covers(node, rtype, categories, action):
            return False
        if permits_here:
            if not node.named:
                return False
            return not any(self._write_denied(c, rtype, categories, True, action)
                           for c in node.children)
        return any(self._write_permitted(c, rtype, categories, False, action)
                   for c in node.children)

    def _write_denied(self, node: Provision, rtype: str, categories: set[str],
                      parent_permits: bool, action: str = "write") -> bool:
        permits_here = (node.type == "permit") if node.type else parent_permits
        if not self._covers(node, rtype, categories, action):
            return False
        if not permits_here:
            return not any(self._write_permitted(c, rtype, categories, False, action)
                           for c in node.children)
        return any(self._write_denied(c, rtype, categories, True, action) for c in node.children)

    def _covers(self, node: Provision, rtype: str, categories: set[str],
                action: str = "write") -> bool:
        if not node.applies or not node.active:
            return False
        if node.actions is not None and action not in node.actions:
            return False
        if node.types is not None and rtype not in node.types:
            return False
        if node.types is None and node.type == "permit" and rtype in rules()["notByBroadGrant"]:
            return False
        if node.type == "permit" and (node.codes is not None or node.data_period is not None):
            return False  # narrowed to codes or a data period: never grants writing, covers part
        if node.labels is not None:
            return categories <= node.labels if node.type == "permit" else bool(categories & node.labels)
        return not (node.type == "permit" and categories & self.caller.rule_codes("explicitOnly"))
