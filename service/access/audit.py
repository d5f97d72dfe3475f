"""Audit: one AuditEvent per patient whose record a request touched, in the style of IHE BALP.

The trail collects what the store returned, counted and wrote during the request; `finish`
writes the AuditEvents through the same connection before commit, so a write and its
AuditEvents commit together and a read that cannot be audited does not happen. A failed request
is audited in a transaction of its own after the rollback.

Each AuditEvent is about one patient: it names that patient as its entity (which alone puts it
in their compartment, `CompartmentDefinition-patient`: AuditEvent by `entity`, never by the
agent), only that patient's resources and Consents, and the query and error text only when they
name no other patient's record. `AuditEvent?patient=...` is so the patient's answer to "who
looked at my work data, when, and why" and shows them no one else; the operator sees every copy.

A professional's write into a patient's record (under a Consent that permits writing) also
leaves a Provenance per resource written: who wrote it, on whose behalf (the patient), and under
which Consent(s) (`policy`). It commits with the write, like the AuditEvent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote_plus

from sqlalchemy import Table, select, union

from ..fhir import dates
from ..store.access import SystemAccess
from ..store.records import StoredResource
from ..store.repository import ResourceStore
from ..store.tables import Compartment, IdxToken, Resource, ResourceLabel
from .principal import Principal

COMP = cast(Table, Compartment.__table__)
RES = Resource.__table__
LABEL = ResourceLabel.__table__
TOKEN = IdxToken.__table__
PATIENT = RES.alias("audit_patient")
DATA_CATEGORY = "https://pgo-work.nl/fhir/CodeSystem/data-category"
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACTIONS = {"read": "R", "vread": "R", "search-type": "E", "search-system": "E", "history-instance": "R",
           "history-type": "R", "history-system": "R", "create": "C", "update": "U", "patch": "U",
           "delete": "D", "transaction": "E", "batch": "E", "operation": "E"}
MAX_ENTITIES = 200
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_WORD = re.compile(r"[A-Za-z0-9\-.]+")
"""What an id (and most identifier values) is made of; a text is read as these words."""
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"


@dataclass
class AuditTrail:
    principal: Principal
    interaction: str = "read"
    query: str | None = None
    client_address: str | None = None
    purposes_of: Callable[[], list[dict[str, Any]]] | None = None
    """AuditEvent.purposeOfEvent for this request (known once the access policy is open)."""
    seen: dict[int, str] = field(default_factory=dict)
    written: dict[int, str] = field(default_factory=dict)
    patients_hint: set[str] = field(default_factory=set)
    """Records the request touched without a resource to show for it: a refused write's
    target record, the records a count-only search counted in."""
    target: tuple[str, str] | None = None
    consent_lookup: Any = None
    """A function patient -> Consent ids that grant this caller access (from ConsentPolicy)."""
    write_consent_lookup: Any = None
    """A function patient -> Consent ids that permitted this caller's writes; set for callers
    who write under consent (professionals), whose writes get a Provenance."""
    wrote: dict[int, StoredResource] = field(default_factory=dict)
    request_id: str | None = None
    """The request's correlation id (MedMij-Request-ID, X-Request-Id or X-Correlation-ID),
    recorded as IHE BALP does: an entity of type XrequestId."""

    def start(self, interaction: str, query: str | None = None,
              target: tuple[str, str] | None = None) -> None:
        self.interaction = interaction
        self.query = query
        self.target = target

    def observe(self, resources: list[StoredResource], wrote: bool = False) -> None:
        target = self.written if wrote else self.seen
        for r in resources:
            target[r.pk] = r.ref
            if wrote:
                self.wrote[r.pk] = r

    async def _records(self, store: ResourceStore, touched: dict[int, str], hint: set[str],
                       target: tuple[str, str] | None,
                       own: str | None) -> dict[str, set[str]]:
        """patient -> the references of what the request touched in that patient's record,
        for every existing Patient whose record it touched (and `own`, the caller's)."""
        records: dict[str, set[str]] = {patient: set() for patient in hint | {own} if patient}
        confirmed: set[str] = set()
        pks = list(touched)
        for i in range(0, len(pks), 500):
            rows = await store.conn.execute(
                select(COMP.c.resource_pk, COMP.c.patient_id)
                .join(PATIENT, (PATIENT.c.resource_type == "Patient")
                      & (PATIENT.c.id == COMP.c.patient_id))
                .where(COMP.c.resource_pk.in_(pks[i:i + 500])))
            for row in rows:
                records.setdefault(row.patient_id, set()).add(touched[row.resource_pk])
                confirmed.add(row.patient_id)
        if target is not None:
            # A refused or failed request about one resource is on its owner's record too, and
            # names what was asked for there (only there: the owner is the one to learn of it).
            rtype, rid = target
            rows = await store.conn.execute(
                select(COMP.c.patient_id).join(RES, RES.c.pk == COMP.c.resource_pk).where(
                    RES.c.resource_type == rtype, RES.c.id == rid))
            owners = {r.patient_id for r in rows} | ({rid} if rtype == "Patient" else set())
            for patient in owners:
                records.setdefault(patient, set()).add(f"{rtype}/{rid}")
        # A reference to a Patient that does not exist is no one's record (yet): an AuditEvent
        # in it would be read by whoever is later created with that id.
        unconfirmed = set(records) - confirmed
        existing = confirmed | (await _existing_patients(store, unconfirmed) if unconfirmed
                                else set())
        return {patient: refs for patient, refs in records.items() if patient in existing}

    async def finish(self, store: ResourceStore, outcome: int, detail: str | None = None) -> None:
        """Write one AuditEvent per patient whose record the request touched (IHE BALP), each
        naming only that patient and what of theirs was touched."""
        failed = outcome >= 400
        # What a failed request wrote was rolled back: it never existed, so it is not named.
        touched = {**self.seen, **({} if failed else self.written)}
        wrote, hint = self.wrote, self.patients_hint
        # A batch completes once per entry.
        self.seen, self.written, self.wrote, self.patients_hint = {}, {}, {}, set()
        target = self.target if failed else None
        # A patient's refused request about a resource: on her own trail too, as below.
        own = self.principal.compartment_patient if (
            target is not None and self.principal.is_patient) else None
        records = await self._records(store, touched, hint, target, own)
        if not records:
            return
        elsewhere = None
        if target is not None and own in records and f"{target[0]}/{target[1]}" not in records[own]:
            # What she asked for is not in her record (someone else's, or nothing): her trail
            # records the type only, the same either way; an id, an error text or a query
            # could name its owner, or tell the two apart.
            elsewhere = target[0]
        query = self.query[:1000] if self.query is not None else None
        detail = detail[:1000] if detail else None
        named = {text: await _patients_named(store, text) for text in (query, detail) if text}

        def kept(text: str | None, patient: str) -> str | None:
            if not text or (elsewhere is not None and patient == own):
                return None
            return text if named[text] <= {patient} else None

        events = [self.event(patient, outcome, refs, kept(query, patient), kept(detail, patient),
                             elsewhere if patient == own else None)
                  for patient, refs in sorted(records.items())]
        system = ResourceStore(store.conn, store.config, SystemAccess())
        # One statement per event: its resource row, version and every index row at once
        # (PostgreSQL; `ResourceStore.create_at_once`), the round trips being a read's cost.
        for event in events:
            await system.create_at_once(event)
        await system.flush()
        if not failed and self.write_consent_lookup is not None and wrote:
            for _patient, provenance in await self._provenances(store, wrote):
                # It joins the record of what it targets (the compartment definition's
                # inheritance through Provenance.target), labelled as what it targets, so the
                # patient sees it and others only as far as they may see what was written.
                await system.create(provenance)
            await system.flush()

    async def _provenances(self, store: ResourceStore,
                           wrote: dict[int, StoredResource]) -> list[tuple[str, dict[str, Any]]]:
        """(patient, Provenance) per resource written into a patient's record."""
        rows = await store.conn.execute(select(COMP.c.resource_pk, COMP.c.patient_id).where(
            COMP.c.resource_pk.in_(list(wrote))))
        owners: dict[int, set[str]] = {}
        for row in rows:
            owners.setdefault(row.resource_pk, set()).add(row.patient_id)
        labels: dict[int, list[dict[str, str]]] = {}
        for row in await store.conn.execute(select(LABEL).where(
                LABEL.c.resource_pk.in_(list(owners)), LABEL.c.system == DATA_CATEGORY)):
            labels.setdefault(row.resource_pk, []).append({"system": row.system, "code": row.code})
        p = self.principal
        who: dict[str, Any] = {"reference": p.fhir_user} if p.fhir_user else {
            "type": "Device", "identifier": {"system": "urn:ietf:rfc:6749#client_id",
                                             "value": p.client_id or p.subject or "unknown"}}
        out = []
        for pk, resource in wrote.items():
            activity = "DELETE" if resource.deleted else ("CREATE" if resource.version_id == 1
                                                          else "UPDATE")
            for patient in sorted(owners.get(pk, ())):
                consents = sorted(self.write_consent_lookup(patient))
                out.append((patient, {
                    "resourceType": "Provenance",
                    "id": str(uuid.uuid4()),
                    **({"meta": {"security": labels[pk]}} if pk in labels else {}),
                    "target": [{"reference": f"{resource.ref}/_history/{resource.version_id}"}],
                    "recorded": dates.to_instant(resource.last_updated),
                    **({"policy": [f"Consent/{c}" for c in consents]} if consents else {}),
                    "activity": {"coding": [{"system": DATA_OPERATION, "code": activity}]},
                    "agent": [{"type": {"coding": [{"system": PARTICIPANT, "code": "author"}]},
                               "who": who, "onBehalfOf": {"reference": f"Patient/{patient}"}}],
                }))
        return out

    def _requestor(self, patient: str) -> dict[str, Any]:
        """The agent who asked. A patient asking about someone else's record (always refused:
        a patient reaches only their own) is not named in that record's copy: its owner learns
        that another patient tried (and with which app, when), not who."""
        p = self.principal
        agent: dict[str, Any] = {"type": {"coding": [{
            "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110153",
            "display": "Source Role ID"}]}, "requestor": True}
        if p.is_patient and p.compartment_patient != patient:
            return {**agent, "who": {"display": "another patient"},
                    **({"role": [{"text": p.role}]} if p.role else {})}
        who: dict[str, Any] = {"reference": p.fhir_user} if p.fhir_user else {
            "identifier": {"system": "urn:ietf:rfc:3986", "value": p.subject or "unknown"}}
        return {**agent, "who": who,
                **({"altId": p.subject} if p.subject else {}),
                **({"role": [{"text": p.role}]} if p.role else {}),
                **({"network": {"address": self.client_address, "type": "2"}}
                   if self.client_address else {})}

    def event(self, patient: str, outcome: int, refs: set[str], query: str | None,
              detail: str | None, elsewhere: str | None = None) -> dict[str, Any]:
        """The AuditEvent about one patient: that patient, what of their record was touched,
        the query and the error text only when they name no one else's record, and only
        that patient's Consents; `elsewhere`: the type of what the patient herself asked for
        outside her record."""
        p = self.principal
        agents: list[dict[str, Any]] = [self._requestor(patient)]
        if p.client_id:
            agents.append({"who": {"identifier": {"system": "urn:ietf:rfc:6749#client_id",
                                                  "value": p.client_id}},
                           "requestor": False, "name": p.client_id})
        entities: list[dict[str, Any]] = [
            {"what": {"reference": f"Patient/{patient}"},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "1", "display": "Patient"}}]
        entities += [{"what": {"reference": ref},
                      "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                               "code": "2", "display": "System Object"}}
                     for ref in sorted(refs - {f"Patient/{patient}"})[:MAX_ENTITIES]]
        if elsewhere is not None:
            entities.append({"type": {"system": "http://hl7.org/fhir/resource-types",
                                      "code": elsewhere},
                             "description": f"A {elsewhere} not in this record, or none"})
        if query is not None:
            entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                      "code": "2"},
                             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                      "code": "24", "display": "Query"},
                             "description": query})
        if self.request_id:
            entities.append({"what": {"identifier": {"value": self.request_id}},
                             "type": {"system": BALP_ENTITY_TYPE, "code": "XrequestId"}})
        consents = self.consent_lookup(patient) if self.consent_lookup is not None else ()
        entities += [{"what": {"reference": f"Consent/{cid}"},
                      "description": "Consent that permitted this access"}
                     for cid in sorted(consents)]
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "id": str(uuid.uuid4()),
            "type": {"system": AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": INTERACTION, "code": self.interaction}],
            "action": ACTIONS.get(self.interaction, "E"),
            "recorded": dates.to_instant(dates.utcnow()),
            "outcome": "0" if outcome < 400 else ("4" if outcome < 500 else "8"),
            "agent": agents,
            "source": {"observer": {"display": "pgo-work"},
                       "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                                 "code": "4", "display": "Application Server"}]},
            "entity": entities,
        }
        if detail:
            event["outcomeDesc"] = detail
        purposes = self.purposes_of() if self.purposes_of is not None else []
        if purposes:
            event["purposeOfEvent"] = purposes
        return event


async def _existing_patients(store: ResourceStore, patients: set[str]) -> set[str]:
    """Those of `patients` that are (or were: a deleted Patient's record keeps its trail)
    Patients on this server."""
    found: set[str] = set()
    ids = sorted(patients)
    for i in range(0, len(ids), 500):
        rows = await store.conn.execute(select(RES.c.id).where(
            RES.c.resource_type == "Patient", RES.c.id.in_(ids[i:i + 500])))
        found.update(r.id for r in rows)
    return found


async def _patients_named(store: ResourceStore, text: str) -> set[str]:
    """The patients whose records a text the audit would copy (a query, an error message)
    names: by their Patient id, by a Patient identifier value (a BSN), or by the id of a
    resource in their record of a type the text names (the searched type included). It fails
    closed: a word that is such an id counts as naming that record, whatever it meant. One
    statement, on indexed columns."""
    plain = unquote_plus(text)
    words = sorted({w for w in _WORD.findall(plain) if len(w) <= 64})
    if not words:
        return set()
    known = set(store.config.registry.types_with_params()) - {"Resource", "DomainResource"}
    types = {w for w in words if w in known}  # the audit's queries start with the type
    statements: list[Any] = [
        select(COMP.c.patient_id).where(COMP.c.patient_id.in_(words)),
        select(COMP.c.patient_id).join(TOKEN, TOKEN.c.resource_pk == COMP.c.resource_pk).where(
            TOKEN.c.param == "Patient.identifier", TOKEN.c.code.in_(words))]
    if types:
        statements.append(select(COMP.c.patient_id).join(RES, RES.c.pk == COMP.c.resource_pk)
                          .where(RES.c.resource_type.in_(sorted(types)), RES.c.id.in_(words)))
    rows = await store.conn.execute(union(*statements))
    return {row.patient_id for row in rows}
