"""The patient's own Consents, compiled per request into the SQL of every query.

A professional sees patient data only through an active permit provision that names them (as
Practitioner, PractitionerRole, Organization, CareTeam, or narrowed by role). Provisions narrow
by resource type (`class`), data category (`securityLabel`), `code`, `period`, `dataPeriod` and
`purpose`; nested provisions are exceptions to their parent (R4 Consent.provision.provision).
Rules in `profiles/rules/access-rules.json` hold whatever a consent says: an employer never
receives anything labelled medical, a labour expert only through a provision that names medical.

The decision is a plan (`consent_plan`, `predicates`) over the `compartment`, `resource_label`
and index tables, so searches, totals, paging, includes, chains, `_has` and history all see the
same filtered rows; writes are checked here, in Python, against the same provisions. A
representative (a RelatedPerson the patient recorded as guardian or attorney) acts as the
patient for that one record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection

from ..fhir import dates
from ..fhir.outcome import FhirError
from ..store.access import PolicyBase, WriteIntent
from . import predicates as P
from .consent_plan import PREFIX, pinned, standing
from .principal import Principal
from .provisions import Caller, ConsentRule, Provision, rules
from .purpose import request_purposes
from .representative import represented_patient
from .resolve import UNKNOWN_ROLE, AccessCache, resolve


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

    async def open(self, conn: AsyncConnection, snapshot: bool = True) -> None:
        found = await resolve(conn, self.principal, self.cache)
        self.caller = Caller(frozenset(found.references), frozenset(found.roles),
                             self.caller.purposes, found.scoped)
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
                if not snapshot:
                    # Later statements may see changes committed after the caller was
                    # resolved: the live lookup holds only while their epoch is the same.
                    self.plan = pinned(self.plan)
                    self.values[f"{PREFIX}epoch"] = found.epoch
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
        if categories & self.caller.rule_codes("never") or self.caller.outside_allowlist(categories):
            return False
        return any(self._write_permitted(rule.root, resource_type, set(categories), False, "read")
                   for rule in self.consents if rule.patient == patient)

    def check_operation(self, name: str) -> None:
        """An operation listed under `operations` in the access rules is for the roles listed
        there; a caller who also holds an employer-side role (one with an `only` allowlist) or
        a role no one defined gets 403 however else they are set up. A representative acts as
        the patient, who may call every operation on their own record."""
        rule = rules().get("operations", {}).get(name)
        if rule is None or self.represents is not None:
            return
        roles = self.caller.roles
        restricted = any("only" in r for r in self.caller.rule_roles) or UNKNOWN_ROLE in roles
        if restricted or not roles & set(rule["roles"]):
            raise FhirError(403, "forbidden", f"Your role may not use ${name}")

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
        if categories & self.caller.rule_codes("never") or self.caller.outside_allowlist(categories):
            raise FhirError(403, "forbidden", "This role may not record data of that category")
        if set(intent.labels) & self.caller.never_labels:
            raise FhirError(403, "forbidden", "This role may not record free text here that was "
                            "not written for the employer")
        for patient in intent.patients:
            permitting = {rule.id for rule in self.consents if rule.patient == patient
                          and self._write_permitted(rule.root, intent.resource_type, categories, False)}
            if not permitting:
                # Never the patient's id: the write may be about a resource the caller
                # cannot see, whose owner they must not learn.
                raise FhirError(403, "forbidden", "No consent permits you to write this")
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
