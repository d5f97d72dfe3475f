"""A patient's Consent as a provision tree: read once per stored version, judged per request.

Reading a Consent (codes, periods, nested provisions) does not depend on who asks, so the parsed
tree is kept per `(resource pk, version)`: a stored version never changes, so the cache can never
answer with a withdrawn consent; which versions are current is read from the database on every
request. What does depend on the request (whether a provision names the caller, whether its
period covers now, whether its purpose is the request's) is decided by `judge`, a cheap walk.

Semantics (R4 Consent, scope `patient-privacy`): a provision counts as a permit only for a caller
its actors (or an ancestor's) name (deny by default); nested provisions are exceptions to their
parent. The full rules are in `docs/access.md`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from ..config import PROJECT_ROOT
from ..fhir import dates

RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
PROFESSIONAL_ROLES = "https://pgo-work.nl/fhir/CodeSystem/professional-role"
RULES_FILE = PROJECT_ROOT / "profiles" / "rules" / "access-rules.json"
Coding = tuple[str | None, str]


@lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(RULES_FILE.read_bytes())
    return loaded


@dataclass(frozen=True)
class Caller:
    """Everything a provision's `actor` can name about the caller, and why they ask."""

    references: frozenset[str]
    """Practitioner/x, PractitionerRole/y, Organization/z, CareTeam/c the caller acts as."""
    roles: frozenset[str]
    """Role codes: the token's role claim and the codes of the caller's PractitionerRoles."""
    purposes: frozenset[Coding] = frozenset()
    """The request's purpose of use (system, code); empty when it is not known."""
    scoped: frozenset[tuple[str, str]] = frozenset()
    """(patient, reference): references that name the caller in that patient's consents only
    (a CareTeam in that patient's record)."""

    def for_patient(self, patient: str) -> Caller:
        """The caller as that patient's consents see them."""
        if not self.scoped:
            return self
        extra = {ref for p, ref in self.scoped if p == patient}
        return Caller(self.references | extra, self.roles, self.purposes)

    @property
    def rule_roles(self) -> list[dict[str, Any]]:
        configured = rules()["roles"]
        return [configured[r] for r in sorted(self.roles) if r in configured]

    def rule_codes(self, key: str) -> frozenset[str]:
        """The union of one rule (`never`, `explicitOnly`) over the caller's roles."""
        return frozenset(c for r in self.rule_roles for c in r.get(key, []))

    @property
    def never_labels(self) -> frozenset[tuple[str, str]]:
        """(system, code) labels of other systems than the data categories that no consent
        opens to any of the caller's roles (`neverLabels`: the clinical-text label)."""
        return frozenset((c["system"], c["code"]) for r in self.rule_roles
                         for c in r.get("neverLabels", []))

    @property
    def allowlist(self) -> frozenset[str] | None:
        """The data categories the caller may ever see, whatever a consent says (`only`: the
        intersection over the caller's roles that have one, e.g. the employer), or None when
        no role of theirs is limited to an allowlist."""
        lists = [frozenset(r["only"]) for r in self.rule_roles if "only" in r]
        return frozenset.intersection(*lists) if lists else None

    def outside_allowlist(self, categories: frozenset[str] | set[str]) -> bool:
        """Whether any of these categories lies outside the caller's fixed allowlist."""
        allowed = self.allowlist
        return allowed is not None and not set(categories) <= allowed


@dataclass(frozen=True)
class Actor:
    reference: str
    roles: frozenset[str]
    """Codes of our professional-role CodeSystem that narrow the reference (empty: none)."""


@dataclass(frozen=True)
class Node:
    """One provision as written, independent of who asks."""

    type: str | None
    actors: tuple[Actor, ...]
    period: tuple[datetime, datetime] | None
    actions: frozenset[str] | None
    types: frozenset[str] | None
    labels: frozenset[str] | None
    codes: tuple[Coding, ...] | None
    data_period: tuple[datetime, datetime] | None
    purposes: frozenset[Coding] | None
    children: tuple[Node, ...] = ()


@dataclass(frozen=True)
class ConsentDoc:
    """An active patient-privacy Consent as written."""

    id: str
    patient: str
    root: Node
    boundaries: tuple[datetime, ...] = ()
    """The moments at which a provision's period starts or ends: between two of them, what
    the consent says to a caller does not change."""
    judged: dict[Caller, tuple[datetime, datetime, ConsentRule]] = field(
        default_factory=dict, compare=False, hash=False, repr=False)
    """Per caller: what it says to them, and the interval of time that holds for."""


def _codes(codings: list[dict[str, Any]]) -> set[str]:
    return {c["code"] for c in codings if isinstance(c, dict) and c.get("code")}


def _node(data: dict[str, Any]) -> Node:
    actors = []
    for actor in data.get("actor") or []:
        ref = (actor.get("reference") or {}).get("reference")
        if isinstance(ref, str) and ref:
            narrowing = {c["code"] for c in (actor.get("role") or {}).get("coding", [])
                         if c.get("system") == PROFESSIONAL_ROLES and c.get("code")}
            actors.append(Actor(ref, frozenset(narrowing)))
        else:
            actors.append(Actor("", frozenset()))  # names no one, but still sets the actors
    action_map = rules()["actions"]
    actions = frozenset(action_map[c] for a in data.get("action", [])
                        for c in _codes(a.get("coding", [])) if c in action_map
                        ) if data.get("action") else None
    types = frozenset(c["code"] for c in data.get("class", []) if c.get("system") == RESOURCE_TYPES
                      and c.get("code")) if data.get("class") else None
    system = rules()["dataCategorySystem"]
    labels = frozenset(c["code"] for c in data.get("securityLabel", []) if c.get("system") == system
                       and c.get("code")) if data.get("securityLabel") else None
    codes = tuple((c.get("system"), c["code"]) for cc in data.get("code", [])
                  for c in cc.get("coding", []) if c.get("code")) if data.get("code") else None
    purposes = frozenset((p.get("system"), p["code"]) for p in data.get("purpose", [])
                         if p.get("code")) if data.get("purpose") else None
    return Node(
        type=data.get("type"),
        actors=tuple(actors),
        period=dates.period_bounds(data["period"]) if data.get("period") else None,
        actions=actions,
        types=types,
        labels=labels,
        codes=codes,
        data_period=dates.period_bounds(data["dataPeriod"]) if data.get("dataPeriod") else None,
        purposes=purposes,
        children=tuple(_node(child) for child in data.get("provision", [])),
    )


def read_consent(consent: dict[str, Any]) -> ConsentDoc | None:
    """The provision tree of an active patient-privacy Consent, or None for any other."""
    if consent.get("status") != "active":
        return None
    scope = _codes((consent.get("scope") or {}).get("coding", []))
    if scope and "patient-privacy" not in scope:
        return None
    patient_ref = (consent.get("patient") or {}).get("reference", "")
    parts = patient_ref.split("/") if isinstance(patient_ref, str) else []
    # `Patient/x` or `Patient/x/_history/n`, as the search index reads it; anything else (an
    # absolute URL, another type) is no consent of a patient of this server.
    if len(parts) not in (2, 4) or parts[0] != "Patient" or not parts[1] or (
            len(parts) == 4 and parts[2] != "_history") or not consent.get("provision"):
        return None
    root = _node(consent["provision"])
    return ConsentDoc(consent["id"], parts[1], root,
                      tuple(sorted(set(_boundaries(root)))))


def _boundaries(node: Node) -> list[datetime]:
    out: list[datetime] = []
    if node.period is not None:
        start, end = node.period
        out.append(start)  # in force from its start ...
        if end < dates.MAX_DT:
            out.append(end + timedelta(microseconds=1))  # ... until just after its end
    for child in node.children:
        out += _boundaries(child)
    return out


class ConsentCache:
    """Parsed Consents by (resource pk, version) of one database (the runtime holds one per
    engine): bounded, and never stale, since a stored version is immutable and the current
    versions are looked up on every request. Losing it costs a re-parse, nothing else."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, int], ConsentDoc | None] = OrderedDict()

    def get(self, key: tuple[int, int]) -> tuple[bool, ConsentDoc | None]:
        if key not in self._items:
            return False, None
        self._items.move_to_end(key)
        return True, self._items[key]

    def put(self, key: tuple[int, int], doc: ConsentDoc | None) -> None:
        self._items[key] = doc
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)



# -- per request ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Provision:
    """One provision as it stands for this caller, now (shared between requests: immutable)."""

    consent_id: str
    type: str | None
    applies: bool
    """Whether the node concerns the caller: its actors name the caller, or it names no
    actor and its parent concerns the caller (a root without actors concerns everyone)."""
    named: bool
    """Whether the caller is named by this node's actors or an ancestor's: a permit counts
    only for a named caller (deny by default), a deny counts for everyone it concerns."""
    active: bool
    """Whether `period` covers now and `purpose` fits the request (a permit needs the
    request's purpose among its own; a deny with purposes holds unless the request's purpose
    is known and is none of them)."""
    actions: frozenset[str] | None
    types: frozenset[str] | None
    labels: frozenset[str] | None
    codes: tuple[Coding, ...] | None
    data_period: tuple[datetime, datetime] | None
    children: tuple[Provision, ...] = ()


@dataclass(frozen=True)
class ConsentRule:
    """An active Consent of one patient, as it stands for this caller."""

    id: str
    patient: str
    root: Provision
    signature: tuple[Any, ...] = ()
    """What it says to the caller, without whose consent it is (see `signature`)."""
    grants_read: bool = False
    grants_write: bool = False
    """Whether any provision permits this caller to read (write) anything."""


def _named_by(actors: tuple[Actor, ...], caller: Caller) -> bool | None:
    """R4 names each actor by `reference` (and the `role` it plays in the consent). A role from
    our professional-role CodeSystem narrows the reference further: `Organization/arbo` as
    `occupational-physician` means the occupational physicians of that service only."""
    if not actors:
        return None  # inherits the parent's decision
    return any(a.reference in caller.references and (not a.roles or bool(a.roles & caller.roles))
               for a in actors)


def _same_coding(a: Coding, b: Coding) -> bool:
    """Equal codes, and equal systems where both say one."""
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def _purpose_fits(node: Node, caller: Caller) -> bool:
    if node.purposes is None:
        return True
    matches = any(_same_coding(p, q) for p in caller.purposes for q in node.purposes)
    if node.type == "deny":
        return matches or not caller.purposes  # a deny holds when the purpose is unknown
    return matches


def _judge(consent_id: str, node: Node, caller: Caller, now: datetime, inherited: bool,
           inherited_named: bool) -> Provision:
    own = _named_by(node.actors, caller)
    applies = inherited if own is None else own
    named = inherited_named if own is None else own
    in_period = node.period is None or node.period[0] <= now <= node.period[1]
    return Provision(
        consent_id=consent_id,
        type=node.type,
        applies=applies,
        named=named,
        active=in_period and _purpose_fits(node, caller),
        actions=node.actions,
        types=node.types,
        labels=node.labels,
        codes=node.codes,
        data_period=node.data_period,
        children=tuple(_judge(consent_id, child, caller, now, applies, named)
                       for child in node.children),
    )


MAX_JUDGED = 64


def judge(doc: ConsentDoc, caller: Caller, now: datetime) -> ConsentRule:
    """The consent as it stands for this caller at this moment (remembered per caller until
    the next period boundary: a professional's consents are judged once, not per request)."""
    memo = doc.judged.get(caller)
    if memo is not None and memo[0] <= now < memo[1]:
        return memo[2]
    root = _judge(doc.id, doc.root, caller.for_patient(doc.patient), now, True, False)
    rule = ConsentRule(doc.id, doc.patient, root, signature(root),
                       grants_something(root, "read"), grants_something(root, "write"))
    low = max((b for b in doc.boundaries if b <= now), default=dates.MIN_DT)
    high = min((b for b in doc.boundaries if b > now), default=dates.MAX_DT)
    if len(doc.judged) >= MAX_JUDGED:
        doc.judged.clear()
    doc.judged[caller] = (low, high, rule)
    return rule


def grants_something(node: Provision, action: str, parent_permits: bool = False) -> bool:
    """Whether any active provision of the tree permits this caller the action."""
    permits_here = (node.type == "permit") if node.type else parent_permits
    usable = node.applies and node.active and (node.actions is None or action in node.actions)
    if usable and permits_here and node.named:
        return True
    return usable and any(grants_something(c, action, permits_here) for c in node.children)


def signature(node: Provision) -> tuple[Any, ...]:
    """What a provision tree means for this caller, without whose consent it is."""
    return (node.type, node.applies, node.named, node.active, node.actions, node.types,
            node.labels, node.codes, node.data_period,
            tuple(signature(child) for child in node.children))
