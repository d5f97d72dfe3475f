"""A caller's Consents as a read plan: which rows of which records they may see.

Each provision becomes a plan (`predicates`) over its resource types, data categories, codes and
data period; nested provisions are exceptions to their parent (a deny inside a permit carves
out, a permit inside a deny opens). Patients whose consents say the same thing to the caller
share one term. The plan is judged once per resolution, purpose of use and period interval
(`standing`), not per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..fhir import dates
from ..store.bound_list import Strings
from . import predicates as P
from .provisions import Caller, ConsentRule, Provision, judge, rules
from .resolve import Resolution

PREFIX = "consent_"


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
        # Failing closed both ways: a permit covers data whose whole clinical span lies in its
        # period, a deny whatever overlaps it, or has no clinical date to tell.
        clauses.append(P.data_within(*node.data_period) if node.type == "permit"
                       else P.data_overlaps(*node.data_period))
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


LIVE_FROM = 500
"""From this many patients on, the largest group is looked up in the database per row
(`predicates.live_patients`) instead of sending its patients with every query."""


def pinned(plan: P.Plan) -> P.Plan:
    """The plan with its live lookup pinned to the caller's change epoch."""
    if plan[0] == "live_patients":
        return P.live_patients(plan[1], f"{PREFIX}epoch")
    return tuple(pinned(p) if isinstance(p, tuple) and p and isinstance(p[0], str) else p
                 for p in plan)


def read_plan(caller: Caller, consents: list[ConsentRule],
              named_by: frozenset[str] = frozenset()) -> tuple[P.Plan, dict[str, Strings], bool]:
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
    # The live lookup finds patients by the caller's references alone; a team in one record
    # names the caller for that record only, which it cannot tell: then every group is listed.
    live = not caller.scoped and largest is not None and len(groups[largest]) >= LIVE_FROM
    terms: list[P.Plan] = []
    values: dict[str, Strings] = {}
    for key in sorted(granting, key=repr):
        if live and key == largest:
            others = sorted(named_by - set(groups[key]))
            values[f"{PREFIX}not_live"] = Strings(others)
            members = P.all_of(P.live_patients(f"{PREFIX}refs"),
                               P.negate(P.in_patients(f"{PREFIX}not_live")))
        else:
            name = f"{PREFIX}g{len(values)}"
            values[name] = Strings(groups[key])
            members = P.in_patients(name)
        terms.append(P.all_of(members, granting[key]))
    never = caller.rule_codes("never")
    allowed = caller.allowlist
    plan = P.all_of(P.any_of(*terms, P.negate(P.IN_RECORD)), P.negate(P.labels_any(never)),
                    P.negate(P.labelled(caller.never_labels)),
                    P.TRUE if allowed is None else P.labels_within(allowed))
    return plan, values, live


@dataclass(frozen=True)
class Standing:
    """What a caller's consents say to them, from `low` until just before `high` (the next
    moment a provision's period starts or ends): the judged consents, the read plan and its
    values. Kept with the resolution it came from, so an unchanged world is judged once."""

    consents: tuple[ConsentRule, ...]
    plan: P.Plan
    values: dict[str, Strings]
    live: bool
    """Whether the plan looks its largest group up live (`read_plan`)."""
    granting: dict[str, tuple[str, ...]]
    """patient -> the Consents that grant this caller anything (for the audit record)."""
    low: datetime
    high: datetime


def standing(found: Resolution, caller: Caller, now: datetime) -> Standing:
    """What the resolved consents say to this caller now: judged once per resolution, purpose
    of use and interval between period boundaries, then kept with the resolution."""
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


