"""The patient's own Consents, compiled per request into the SQL of every query.

A professional sees patient data only through an active permit provision that names them (as
Practitioner, PractitionerRole, Organization, CareTeam, or by role). Provisions narrow by
resource type (`class`), data category (`securityLabel`), `code`, `period` and `dataPeriod`;
nested provisions are exceptions to their parent (R4 Consent.provision.provision). Rules in
`profiles/rules/access-rules.json` hold whatever a consent says: an employer never receives
anything labelled medical, a labour expert only through a provision that names medical.

The decision is an SQL predicate over the `compartment`, `resource_label` and index tables, so
searches, totals, paging, includes, chains, `_has` and history all see the same filtered rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select, true

from ..config import PROJECT_ROOT
from ..fhir import dates
from ..fhir.outcome import FhirError
from ..store.access import PolicyBase, WriteIntent
from ..store.tables import Compartment, IdxDate, IdxToken, ResourceLabel
from .policy import in_some_record

COMP = Compartment.__table__
LABEL = ResourceLabel.__table__
TOKEN = IdxToken.__table__
DATE = IdxDate.__table__
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
RULES_FILE = PROJECT_ROOT / "profiles" / "rules" / "access-rules.json"


@lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(RULES_FILE.read_bytes())
    return loaded


@dataclass(frozen=True)
class Caller:
    """Everything a provision's `actor` can name about the caller."""

    references: frozenset[str]
    """Practitioner/x, PractitionerRole/y, Organization/z, CareTeam/c the caller acts as."""
    roles: frozenset[str]
    """Role codes: the token's role claim and the codes of the caller's PractitionerRoles."""

    @property
    def rule_roles(self) -> list[dict[str, Any]]:
        configured = rules()["roles"]
        return [configured[r] for r in sorted(self.roles) if r in configured]


@dataclass
class Provision:
    """One node of a Consent's provision tree, with what the caller needs to evaluate it."""

    consent_id: str
    type: str | None
    applies: bool
    """Whether the node concerns the caller: its actors name the caller, or it names no
    actor and its parent concerns the caller (a root without actors concerns everyone)."""
    named: bool
    """Whether the caller is named by this node's actors or an ancestor's: a permit counts
    only for a named caller (deny by default), a deny counts for everyone it concerns."""
    active: bool
    """Whether `period` covers now."""
    actions: frozenset[str] | None
    types: frozenset[str] | None
    labels: frozenset[str] | None
    codes: tuple[tuple[str | None, str], ...] | None
    data_period: tuple[datetime, datetime] | None
    children: list[Provision] = field(default_factory=list)


@dataclass
class ConsentRule:
    """An active Consent of one patient, as a provision tree."""

    id: str
    patient: str
    root: Provision


def _codes(codings: list[dict[str, Any]]) -> set[str]:
    return {c["code"] for c in codings if c.get("code")}


PROFESSIONAL_ROLES = "https://pgo-work.nl/fhir/CodeSystem/professional-role"


def _actor_applies(node: dict[str, Any], caller: Caller) -> bool | None:
    """R4 names each actor by `reference` (and the `role` it plays in the consent). A role
    from our professional-role CodeSystem narrows the reference further: `Organization/arbo`
    as `occupational-physician` means the occupational physicians of that service only."""
    actors = node.get("actor") or []
    if not actors:
        return None  # inherits the parent's decision
    for actor in actors:
        ref = (actor.get("reference") or {}).get("reference")
        if not ref or ref not in caller.references:
            continue
        required = {c["code"] for c in (actor.get("role") or {}).get("coding", [])
                    if c.get("system") == PROFESSIONAL_ROLES and c.get("code")}
        if not required or required & caller.roles:
            return True
    return False


def _period_active(period: dict[str, Any] | None, now: datetime) -> bool:
    if not period:
        return True
    try:
        start = dates.parse_range(period["start"])[0] if period.get("start") else dates.MIN_DT
        end = dates.parse_range(period["end"])[1] if period.get("end") else dates.MAX_DT
    except dates.DateFormatError:
        return False
    return start <= now <= end


def _provision(consent_id: str, node: dict[str, Any], caller: Caller, inherited: bool,
               inherited_named: bool, now: datetime) -> Provision:
    own = _actor_applies(node, caller)
    applies = inherited if own is None else own
    named = inherited_named if own is None else own
    action_map = rules()["actions"]
    actions = {action_map[c] for a in node.get("action", []) for c in _codes(a.get("coding", []))
               if c in action_map} if node.get("action") else None
    types = {c["code"] for c in node.get("class", []) if c.get("system") == RESOURCE_TYPES
             and c.get("code")} if node.get("class") else None
    system = rules()["dataCategorySystem"]
    labels = {c["code"] for c in node.get("securityLabel", []) if c.get("system") == system
              and c.get("code")} if node.get("securityLabel") else None
    codes = tuple((c.get("system"), c["code"]) for cc in node.get("code", [])
                  for c in cc.get("coding", []) if c.get("code")) if node.get("code") else None
    data_period = None
    if node.get("dataPeriod"):
        dp = node["dataPeriod"]
        try:
            data_period = (dates.parse_range(dp["start"])[0] if dp.get("start") else dates.MIN_DT,
                           dates.parse_range(dp["end"])[1] if dp.get("end") else dates.MAX_DT)
        except dates.DateFormatError:
            data_period = (dates.MAX_DT, dates.MIN_DT)  # unreadable: matches nothing
    return Provision(
        consent_id=consent_id,
        type=node.get("type"),
        applies=applies,
        named=named,
        active=_period_active(node.get("period"), now),
        actions=frozenset(actions) if actions is not None else None,
        types=frozenset(types) if types is not None else None,
        labels=frozenset(labels) if labels is not None else None,
        codes=codes,
        data_period=data_period,
        children=[_provision(consent_id, child, caller, applies, named, now)
                  for child in node.get("provision", [])],
    )


def parse_consent(consent: dict[str, Any], caller: Caller, now: datetime) -> ConsentRule | None:
    """The rule an active patient-privacy Consent sets for this caller, or None."""
    if consent.get("status") != "active":
        return None
    scope = _codes((consent.get("scope") or {}).get("coding", []))
    if scope and "patient-privacy" not in scope:
        return None
    patient_ref = (consent.get("patient") or {}).get("reference", "")
    if not patient_ref.startswith("Patient/") or not consent.get("provision"):
        return None
    root = _provision(consent["id"], consent["provision"], caller, True, False, now)
    return ConsentRule(consent["id"], patient_ref.split("/", 1)[1], root)


# -- compiling to SQL --------------------------------------------------------------------


def _node_filter(node: Provision, pk: Any, rtype: Any, action: str,
                 caller: Caller) -> ColumnElement[bool]:
    """The rows a node's constraints cover (its own type decides what covering means)."""
    if not node.applies or not node.active:
        return false()
    if node.actions is not None and action not in node.actions:
        return false()
    clauses: list[ColumnElement[bool]] = []
    if node.types is not None:
        clauses.append(rtype.in_(sorted(node.types)))
    elif node.type == "permit":
        clauses.append(rtype.notin_(rules()["notByBroadGrant"]))
    system = rules()["dataCategorySystem"]
    if node.labels is not None:
        allowed = set(node.labels)
        if node.type == "permit":
            # every data category the resource carries must be granted
            clauses.append(not_(exists().where(and_(
                LABEL.c.resource_pk == pk, LABEL.c.system == system,
                LABEL.c.code.notin_(sorted(allowed))))))
        else:
            clauses.append(exists().where(and_(
                LABEL.c.resource_pk == pk, LABEL.c.system == system,
                LABEL.c.code.in_(sorted(allowed)))))
    elif node.type == "permit":
        explicit_only = {c for r in caller.rule_roles for c in r.get("explicitOnly", [])}
        if explicit_only:
            clauses.append(not_(exists().where(and_(
                LABEL.c.resource_pk == pk, LABEL.c.system == system,
                LABEL.c.code.in_(sorted(explicit_only))))))
    if node.codes is not None:
        matches = [and_(TOKEN.c.code == code, TOKEN.c.system == system_ if system_ else true())
                   for system_, code in node.codes]
        clauses.append(exists().where(and_(TOKEN.c.resource_pk == pk, TOKEN.c.param.like("%.code"),
                                           or_(*matches))))
    if node.data_period is not None:
        low, high = node.data_period
        clauses.append(exists().where(and_(
            DATE.c.resource_pk == pk,
            or_(DATE.c.param.like("%.date"), DATE.c.param.like("%.authored")),
            DATE.c.low >= low, DATE.c.high <= high)))
    return and_(true(), *clauses)


def _permits(node: Provision, pk: Any, rtype: Any, action: str, caller: Caller,
             parent_permits: bool) -> ColumnElement[bool]:
    """Rows for which this node (with its exceptions) ends in permit."""
    permits_here = (node.type == "permit") if node.type else parent_permits
    covered = _node_filter(node, pk, rtype, action, caller)
    if permits_here:
        if not node.named:
            return false()
        vetoes = [_denies(c, pk, rtype, action, caller, True) for c in node.children]
        return and_(covered, *[not_(v) for v in vetoes])
    grants = [_permits(c, pk, rtype, action, caller, False) for c in node.children]
    return and_(covered, or_(false(), *grants))


def _denies(node: Provision, pk: Any, rtype: Any, action: str, caller: Caller,
            parent_permits: bool) -> ColumnElement[bool]:
    """Rows for which this node (with its exceptions) ends in deny."""
    permits_here = (node.type == "permit") if node.type else parent_permits
    covered = _node_filter(node, pk, rtype, action, caller)
    if not permits_here:
        carve_outs = [_permits(c, pk, rtype, action, caller, False) for c in node.children]
        return and_(covered, *[not_(c) for c in carve_outs])
    return and_(covered, or_(false(), *[_denies(c, pk, rtype, action, caller, True)
                                        for c in node.children]))


def _signature(node: Provision) -> tuple[Any, ...]:
    """What a provision tree means for this caller, without whose consent it is."""
    return (node.type, node.applies, node.named, node.active, node.actions, node.types,
            node.labels, node.codes, node.data_period,
            tuple(_signature(child) for child in node.children))


def _grants_something(node: Provision, action: str, parent_permits: bool) -> bool:
    """Whether any active provision of the tree permits this caller the action."""
    permits_here = (node.type == "permit") if node.type else parent_permits
    usable = node.applies and node.active and (node.actions is None or action in node.actions)
    if usable and permits_here and node.named:
        return True
    return usable and any(_grants_something(c, action, permits_here) for c in node.children)


class ConsentPolicy(PolicyBase):
    """Access for a professional (or system client acting as one): deny by default, permit
    through the patient's Consents, never past the rules that no consent overrides."""

    def __init__(self, caller: Caller, consents: list[ConsentRule]) -> None:
        self.caller = caller
        self.consents = consents
        self.write_consents: dict[str, set[str]] = {}
        """patient -> the Consents that permitted this request's writes (for Provenance)."""

    def consent_ids(self, patient: str) -> list[str]:
        """The caller's consents from this patient (recorded in the audit trail)."""
        return sorted({r.id for r in self.consents if r.patient == patient})

    def _granted(self, pk: Any, rtype: Any, action: str) -> ColumnElement[bool]:
        """OR over groups of patients whose consents say the same thing to this caller.

        A professional may hold consents from hundreds of patients, mostly alike: grouping by
        what the provision trees say (not by patient) keeps the SQL one term per distinct
        grant, with the patients as one `IN` list."""
        by_patient: dict[str, list[ConsentRule]] = {}
        for rule in self.consents:
            by_patient.setdefault(rule.patient, []).append(rule)
        groups: dict[tuple[Any, ...], list[str]] = {}
        for patient, consent_rules in sorted(by_patient.items()):
            signature = tuple(sorted((_signature(r.root) for r in consent_rules), key=repr))
            groups.setdefault(signature, []).append(patient)
        grants = []
        for patients in groups.values():
            consent_rules = by_patient[patients[0]]
            permits = [_permits(r.root, pk, rtype, action, self.caller, False) for r in consent_rules]
            if any(_grants_something(r.root, action, False) for r in consent_rules):
                # Whoever may see part of a record may see whose record it is.
                permits.append(rtype == "Patient")
            members = select(COMP.c.resource_pk).where(COMP.c.patient_id.in_(patients))
            grants.append(and_(pk.in_(members), or_(*permits)))
        return or_(false(), *grants)

    def _never(self, pk: Any) -> ColumnElement[bool] | None:
        never = {c for r in self.caller.rule_roles for c in r.get("never", [])}
        if not never:
            return None
        return not_(exists().where(and_(LABEL.c.resource_pk == pk,
                                        LABEL.c.system == rules()["dataCategorySystem"],
                                        LABEL.c.code.in_(sorted(never)))))

    def visible(self, pk: Any, resource_type: Any) -> ColumnElement[bool] | None:
        outside_records = not_(in_some_record(pk))
        allowed = or_(outside_records, self._granted(pk, resource_type, "read"))
        never = self._never(pk)
        return allowed if never is None else and_(allowed, never)

    def check_type(self, resource_type: str | None, action: str) -> None:
        return None

    def may_read(self, patient: str, resource_type: str, categories: frozenset[str]) -> bool:
        """Python twin of the read predicate for a resource that may or may not exist: true
        only when a permit covers all of it (a permit narrowed to codes or a data period covers
        part, so it does not count) and no exception could take part of it away."""
        never = {c for r in self.caller.rule_roles for c in r.get("never", [])}
        if categories & never:
            return False
        return any(self._write_permitted(rule.root, resource_type, set(categories), False, "read")
                   for rule in self.consents if rule.patient == patient)

    def check_write(self, intent: WriteIntent) -> None:
        """Writes into a patient's record need a write permit covering what is written."""
        if intent.resource_type == "Consent":
            raise FhirError(403, "forbidden", "Only the patient can create or change their consents")
        if not intent.patients:
            return
        system = rules()["dataCategorySystem"]
        categories = {code for sys, code in intent.labels if sys == system}
        never = {c for r in self.caller.rule_roles for c in r.get("never", [])}
        if categories & never:
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
        explicit_only = {c for r in self.caller.rule_roles for c in r.get("explicitOnly", [])}
        return not (node.type == "permit" and categories & explicit_only)


