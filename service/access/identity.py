"""Who may write the resources a caller's identity is read from.

Consent is judged against the caller's references and roles, and those are read from stored
resources (their PractitionerRoles and that role's Organization, the CareTeams they take part
in, the RelatedPerson a representative acts as). Whoever could write those could give
themselves any organisation's consents, or drop a rule that restricts them. So these writes are
for the operator (token role `service`), or an organisation's administrator (token role
`organization-admin`, the organisation in the token's `organization` claim) for what belongs to
their own organisation and does not name themself; never for the subject. A team in a
patient's record is the patient's own; a representative is appointed by the patient or the
operator only. The rules per type are data: `identity` and `representative` in
`profiles/rules/access-rules.json`. Every write passes here (create, update with the content it
replaces, delete, conditional writes, Bundle entries: the store calls `check_write` for each).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ..store.access import PolicyBase, WriteIntent
from .policy import forbidden
from .principal import Principal
from .provisions import rules

OPERATOR = "service"


class Represents(Protocol):
    """What the consent policy knows after `open`: the patient a representative acts for."""

    represents: str | None


def references_at(resource: dict[str, Any] | None, path: str) -> list[str]:
    """The `reference` strings found at a dotted path (`participant.member`), through lists."""
    found: list[Any] = [resource] if resource is not None else []
    for step in path.split("."):
        nxt: list[Any] = []
        for node in found:
            value = node.get(step) if isinstance(node, dict) else None
            nxt.extend(value if isinstance(value, list) else [value] if value is not None else [])
        found = nxt
    return [n["reference"] for n in found if isinstance(n, dict) and isinstance(n.get("reference"), str)]


def is_representative(resource: dict[str, Any] | None) -> bool:
    """A RelatedPerson with a relationship that makes them act as the patient (whatever its
    `active` or `period` say now: those can be changed back)."""
    if resource is None:
        return False
    allowed = {(r["system"], r["code"]) for r in rules()["representative"]["relationships"]}
    return any((c.get("system"), c.get("code")) in allowed
               for concept in resource.get("relationship") or [] if isinstance(concept, dict)
               for c in concept.get("coding") or [] if isinstance(c, dict))


class IdentityRules(PolicyBase):
    """Refuses writes of identity-bearing resources by anyone not entitled to them."""

    def __init__(self, principal: Principal, consent: Represents | None = None) -> None:
        self.principal = principal
        self.consent = consent

    @property
    def operator(self) -> bool:
        return self.principal.role == OPERATOR

    def check_write(self, intent: WriteIntent) -> None:
        if self.operator:
            return
        if intent.resource_type == "RelatedPerson":
            self._related_person(intent)
            return
        rule = rules()["identity"]["types"].get(intent.resource_type)
        if rule is None:
            return
        for content, patients in self._versions(intent):
            if content is None and not patients:
                continue  # the replaced version was deleted: nothing of anyone's to protect
            if patients:
                self._in_record(rule, intent.resource_type, patients)
            elif content is not None:
                self._of_organization(rule, intent.resource_type, content)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _versions(intent: WriteIntent) -> Iterator[tuple[dict[str, Any] | None, frozenset[str]]]:
        """The content written and the content it replaces, each with its records: both must
        be the caller's to write (re-pointing someone else's role at yourself is a write of
        theirs)."""
        if intent.action != "delete":
            yield intent.resource, intent.patients
        if intent.action != "create":
            yield intent.previous, intent.previous_patients

    def _related_person(self, intent: WriteIntent) -> None:
        """Only the patient (or the operator, for a court-appointed guardian) makes someone a
        representative, changes one, or ends one; a representative appoints no one."""
        if not (is_representative(intent.resource) or is_representative(intent.previous)):
            return  # an ordinary related person: the consent rules decide
        if self.principal.is_patient and not self._representative():
            return  # the patient's own record only: the scope policy confines them to it
        raise forbidden("Only the patient, or the operator, may appoint or change a representative")

    def _representative(self) -> bool:
        return self.consent is not None and self.consent.represents is not None

    def _in_record(self, rule: dict[str, Any], rtype: str, patients: frozenset[str]) -> None:
        how = rule.get("inRecord")
        if how == "consent":
            return
        if how == "patient":
            represents = self.consent.represents if self.consent is not None else None
            if self.principal.is_patient or (represents is not None and patients <= {represents}):
                return  # the scope (or consent) policy keeps them to their own record
            raise forbidden(f"A {rtype} in a patient's record is written by that patient only")
        raise forbidden(f"Only the operator may write a {rtype} in a patient's record")

    def _of_organization(self, rule: dict[str, Any], rtype: str, content: dict[str, Any]) -> None:
        """An organisation administrator: the resource belongs to their organisation (old and
        new content) and names neither them nor their own role."""
        settings = rules()["identity"]
        own = self.principal.organization
        if self.principal.role != settings["adminRole"] or own is None:
            raise forbidden(f"Only the operator or the organisation's administrator may write {rtype}")
        owners = references_at(content, rule["organization"])
        if not owners or any(o != own for o in owners):
            raise forbidden(f"This {rtype} does not belong to {own}")
        me = {self.principal.fhir_user} - {None}
        named = {f"{rtype}/{content.get('id')}"} | {
            r for path in rule["subjects"] for r in references_at(content, path)}
        if me & named:
            raise forbidden(f"An administrator may not write a {rtype} that names themself")
