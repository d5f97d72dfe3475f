"""Access policies built from a token: what its SMART scopes allow, as SQL and as checks.

`ScopePolicy` is only the scope half of "scope AND consent AND policy": it never widens
anything, and `Policies` ANDs it with whatever else applies (consent is one more policy in the
list), so each policy can be written and tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_
from sqlalchemy.ext.asyncio import AsyncConnection

from ..fhir.outcome import FhirError
from ..store.access import AccessPolicy, PolicyBase, WriteIntent
from ..store.indexer import Indexer
from ..store.searchparams import SearchParamRegistry
from . import predicates as P
from .principal import Principal
from .scopes import ACTION_PERMISSION, ResourceScope

WRITE_PERMISSION = {"create": "c", "update": "u", "delete": "d"}
OWN_RECORD = "scope_patient"
"""The bind parameter holding the token's patient (patient/ scopes, a patient's own token)."""


def forbidden(diagnostics: str) -> FhirError:
    """403: the token is valid but does not allow this (RFC 6750 insufficient_scope)."""
    return FhirError(403, "forbidden", diagnostics,
                     headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})


class ScopePolicy(PolicyBase):
    """Enforces one principal's SMART scopes; nothing about consent or labels.

    - patient/ scopes cover only the compartment of the token's patient; without a patient
      context they cover nothing;
    - user/ and system/ scopes restrict resource types and actions, not rows (consent does);
    - a patient (fhirUser Patient/...) sees and writes nothing outside their own compartment,
      whatever the scopes say;
    - granular scopes (`?category=system|code`) cover only resources whose token search
      parameter matches; what cannot be compiled covers nothing.
    """

    def __init__(self, principal: Principal, registry: SearchParamRegistry | None = None) -> None:
        self.principal = principal
        self.registry = registry
        self.patient = self._patient()
        self.scopes = tuple(s for s in principal.scopes.resources
                            if s.context != "patient" or self.patient is not None)
        self.plan = self._read_plan()
        self.values = {OWN_RECORD: [self.patient]} if self.patient is not None else {}

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.values

    def _patient(self) -> str | None:
        p = self.principal
        fhir_user = p.fhir_user or ""
        own = fhir_user.split("/", 1)[1] if fhir_user.startswith("Patient/") else None
        if own is not None and p.patient is not None and p.patient != own:
            return None  # a patient's token bound to someone else's record: trust neither
        return p.compartment_patient

    # -- AccessPolicy ---------------------------------------------------------------------
    def check_type(self, resource_type: str | None, action: str) -> None:
        permission = ACTION_PERMISSION.get(action, action)
        if resource_type is None:
            ok = any(permission in s.permissions for s in self.scopes)
        else:
            ok = any(s.grants(resource_type, permission) for s in self.scopes)
        if not ok:
            target = resource_type or "any resource type"
            raise forbidden(f"The token's scopes do not allow {action} on {target}")

    def visible(self, pk: Any, resource_type: Any) -> ColumnElement[bool] | None:
        return P.predicate(self.plan, pk, resource_type)

    def _read_plan(self) -> P.Plan:
        readable = [s for s in self.scopes if s.permissions & {"r", "s"}]
        plan = self._union(readable)
        if self.principal.is_patient:
            if self.patient is None:
                return P.FALSE
            # Their own record, and what belongs to no one's record (forms to fill in, the
            # directory of professionals); never another patient's data.
            return P.all_of(plan, P.any_of(P.in_patients(OWN_RECORD), P.negate(P.IN_RECORD)))
        return plan

    def may_read(self, patient: str, resource_type: str, categories: frozenset[str]) -> bool:
        """A plain (non-granular) read or search scope covers the type in that record; a
        granular scope covers only some rows, so it does not count as covering them all."""
        if self.principal.is_patient and self.patient != patient:
            return False
        return any(s.permissions & {"r", "s"} and s.covers_type(resource_type) and not s.params
                   and (s.context != "patient" or self.patient == patient) for s in self.scopes)

    def check_write(self, intent: WriteIntent) -> None:
        permission = WRITE_PERMISSION[intent.action]
        granting = [s for s in self.scopes if s.grants(intent.resource_type, permission)]
        if not granting:
            raise forbidden(f"The token's scopes do not allow {intent.action} on {intent.resource_type}")
        if self.principal.is_patient and not self._own(intent):
            raise forbidden("A patient can only write resources in their own record")
        if not any(self._write_covered(s, intent) for s in granting):
            raise forbidden(f"The token's scopes do not allow this {intent.action}: the resource is "
                            "outside the patient or the categories the token is limited to")

    # -- helpers ----------------------------------------------------------------------------
    def _own(self, intent: WriteIntent) -> bool:
        return self.patient is not None and bool(intent.patients) and intent.patients <= {self.patient}

    def _write_covered(self, scope: ResourceScope, intent: WriteIntent) -> bool:
        if scope.context == "patient" and not self._own(intent):
            return False
        if scope.params:
            return intent.resource is not None and self._resource_matches(scope, intent.resource)
        return True

    def _union(self, scopes: Sequence[ResourceScope]) -> P.Plan:
        """OR over scopes (TRUE when one of them restricts nothing)."""
        clauses: list[P.Plan] = []
        for context in ("user", "system", "patient"):
            plain = {s.resource_type for s in scopes if s.context == context and not s.params}
            if not plain:
                continue
            clauses.append(P.all_of(
                P.TRUE if "*" in plain else P.type_in(plain),
                P.in_patients(OWN_RECORD) if context == "patient" else P.TRUE))
        for s in scopes:
            if s.params:
                clauses.append(P.all_of(
                    P.type_is(s.resource_type), self._granular(s),
                    P.in_patients(OWN_RECORD) if s.context == "patient" else P.TRUE))
        return P.any_of(*clauses)

    def _token_params(self, scope: ResourceScope) -> list[tuple[str, list[str]]] | None:
        """(index key, values) per granular parameter, or None when one cannot be enforced."""
        if scope.resource_type == "*" or self.registry is None:
            return None
        out = []
        for code, value in scope.params:
            param = self.registry.get(scope.resource_type, code)
            if param is None or param.type != "token":
                return None
            out.append((param.key, value.split(",")))
        return out

    def _granular(self, scope: ResourceScope) -> P.Plan:
        params = self._token_params(scope)
        if params is None:
            return P.FALSE
        return P.all_of(*[P.token(key, tuple(values)) for key, values in params])

    def _resource_matches(self, scope: ResourceScope, resource: dict[str, Any]) -> bool:
        """The same granular test on a resource about to be written, from its index rows."""
        params = self._token_params(scope)
        if params is None or self.registry is None:
            return False
        rows = Indexer(self.registry).index({"id": "x", **resource}).rows.get("token", [])
        for key, values in params:
            if not any(r["param"] == key and _row_matches(r, v) for r in rows for v in values):
                return False
        return True


def _row_matches(row: dict[str, Any], value: str) -> bool:
    if "|" not in value:
        return bool(row.get("code") == value)
    sys, _, c = value.partition("|")
    if sys and c:
        return bool(row.get("system") == sys and row.get("code") == c)
    if sys:
        return bool(row.get("system") == sys)
    return bool(row.get("code") == c and row.get("system") is None)


class RecordRules(PolicyBase):
    """Rules about the record itself that hold for every caller: the audit trail is written by
    the server and never changed or deleted through the API."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def check_write(self, intent: WriteIntent) -> None:
        if intent.resource_type != "AuditEvent":
            return
        if intent.action != "create" or self.principal.role != "service":
            raise forbidden("AuditEvents are written by the server and cannot be changed or deleted")



@lru_cache(maxsize=256)
def _conjunction(*predicates: ColumnElement[bool]) -> ColumnElement[bool]:
    """One object per combination of the (cached) predicates, so that statements built on it
    can be cached by it too."""
    return and_(*predicates)


class Policies:
    """Several policies at once: every check runs, visibility predicates are ANDed; the audit
    trail, when there is one, follows the request through its life cycle."""

    def __init__(self, all_of: Sequence[AccessPolicy], trail: Any = None) -> None:
        self.all_of = list(all_of)
        self.trail = trail

        self._parameters: dict[str, Any] = {}

    async def open(self, conn: AsyncConnection, snapshot: bool = True) -> None:
        merged: dict[str, Any] = {}
        for policy in self.all_of:
            await policy.open(conn, snapshot)
            merged.update(policy.parameters)
        self._parameters = merged

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self._parameters

    def visible(self, pk: Any, resource_type: Any) -> ColumnElement[bool] | None:
        predicates = [p for p in (policy.visible(pk, resource_type) for policy in self.all_of)
                      if p is not None]
        if not predicates:
            return None
        return predicates[0] if len(predicates) == 1 else _conjunction(*predicates)

    def check_write(self, intent: WriteIntent) -> None:
        if self.trail is not None:
            # Whose record this write goes into: a refused write is on that record's trail too.
            self.trail.patients_hint.update(intent.patients)
        for policy in self.all_of:
            policy.check_write(intent)

    def check_type(self, resource_type: str | None, action: str) -> None:
        for policy in self.all_of:
            policy.check_type(resource_type, action)

    def check_operation(self, name: str) -> None:
        for policy in self.all_of:
            policy.check_operation(name)

    def may_read(self, patient: str, resource_type: str, categories: frozenset[str]) -> bool:
        return all(policy.may_read(patient, resource_type, categories) for policy in self.all_of)

    def start(self, interaction: str, query: str | None = None,
              target: tuple[str, str] | None = None) -> None:
        if self.trail is not None:
            self.trail.start(interaction, query, target)

    def seen(self, resources: list[Any], wrote: bool = False) -> None:
        if self.trail is not None:
            self.trail.observe(resources, wrote)

    def counted(self, patients: set[str]) -> None:
        if self.trail is not None:
            self.trail.patients_hint.update(patients)

    @property
    def audited(self) -> bool:
        return self.trail is not None

    async def complete(self, store: Any, status: int, detail: str | None = None) -> None:
        if self.trail is not None:
            await self.trail.finish(store, status, detail)
