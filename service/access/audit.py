"""Audit: one AuditEvent per request that touches patient data, in the style of IHE BALP.

The trail collects what the store returned and wrote during the request; `finish` writes the
AuditEvent through the same connection before commit, so a write and its AuditEvent commit
together and a read that cannot be audited does not happen. A failed request is audited in a
transaction of its own after the rollback. Each AuditEvent names the patient(s) as entities,
which puts it in their compartment: `AuditEvent?patient=...` is the patient's answer to "who
looked at my work data, when, and why".

A professional's write into a patient's record (under a Consent that permits writing) also
leaves a Provenance per resource written: who wrote it, on whose behalf (the patient), and under
which Consent(s) (`policy`). It commits with the write, like the AuditEvent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, select

from ..fhir import dates
from ..store.access import SystemAccess
from ..store.records import StoredResource
from ..store.repository import ResourceStore
from ..store.tables import Compartment, Resource, ResourceLabel
from .principal import Principal

COMP = cast(Table, Compartment.__table__)
RES = Resource.__table__
LABEL = ResourceLabel.__table__
DATA_CATEGORY = "https://pgo-work.nl/fhir/CodeSystem/data-category"
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACTIONS = {"read": "R", "vread": "R", "search-type": "E", "search-system": "E", "history-instance": "R",
           "history-type": "R", "history-system": "R", "create": "C", "update": "U", "patch": "U",
           "delete": "D", "transaction": "E", "batch": "E", "operation": "E"}
MAX_ENTITIES = 200
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"


@dataclass
class AuditTrail:
    principal: Principal
    interaction: str = "read"
    query: str | None = None
    client_address: str | None = None
    consents: set[str] = field(default_factory=set)
    purposes_of: Callable[[], list[dict[str, Any]]] | None = None
    """AuditEvent.purposeOfEvent for this request (known once the access policy is open)."""
    seen: dict[int, str] = field(default_factory=dict)
    written: dict[int, str] = field(default_factory=dict)
    patients_hint: set[str] = field(default_factory=set)
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

    async def _patients(self, store: ResourceStore, failed: bool) -> set[str]:
        pks = list({**self.seen, **self.written})
        found: set[str] = set(self.patients_hint)
        if failed and self.target is not None:
            # A refused or failed request about one resource is on that patient's record too.
            rtype, rid = self.target
            rows = await store.conn.execute(
                select(COMP.c.patient_id).join(RES, RES.c.pk == COMP.c.resource_pk).where(
                    RES.c.resource_type == rtype, RES.c.id == rid))
            found.update(r.patient_id for r in rows)
            if rtype == "Patient" and await _exists(store, rid):
                found.add(rid)
        for i in range(0, len(pks), 500):
            rows = await store.conn.execute(select(COMP.c.patient_id).where(
                COMP.c.resource_pk.in_(pks[i:i + 500])).distinct())
            found.update(r.patient_id for r in rows)
        return found

    async def finish(self, store: ResourceStore, outcome: int, detail: str | None = None) -> None:
        """Write the AuditEvent when the request touched a patient's record."""
        failed = outcome >= 400
        patients = await self._patients(store, failed)
        # What a failed request wrote was rolled back: it never existed, so it is not named.
        touched, wrote = (self.seen, {} if failed else self.written), self.wrote
        # A batch completes once per entry.
        self.seen, self.written, self.wrote, self.patients_hint = {}, {}, {}, set()
        if not patients:
            return
        if self.consent_lookup is not None:
            for patient in patients:
                self.consents.update(self.consent_lookup(patient))
        event = self.event(patients, outcome, detail, touched)
        system = ResourceStore(store.conn, store.config, SystemAccess())
        await system.create(event)
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

    def event(self, patients: set[str], outcome: int, detail: str | None,
              touched: tuple[dict[int, str], dict[int, str]]) -> dict[str, Any]:
        p = self.principal
        who: dict[str, Any] = {"reference": p.fhir_user} if p.fhir_user else {
            "identifier": {"system": "urn:ietf:rfc:3986", "value": p.subject or "unknown"}}
        agents: list[dict[str, Any]] = [{
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                 "code": "110153", "display": "Source Role ID"}]},
            "who": who,
            **({"altId": p.subject} if p.subject else {}),
            "requestor": True,
            **({"role": [{"text": p.role}]} if p.role else {}),
            **({"network": {"address": self.client_address, "type": "2"}}
               if self.client_address else {}),
        }]
        if p.client_id:
            agents.append({"who": {"identifier": {"system": "urn:ietf:rfc:6749#client_id",
                                                  "value": p.client_id}},
                           "requestor": False, "name": p.client_id})
        entities: list[dict[str, Any]] = [
            {"what": {"reference": f"Patient/{pid}"},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "1", "display": "Patient"}}
            for pid in sorted(patients)]
        refs = sorted(set(touched[0].values()) | set(touched[1].values()))[:MAX_ENTITIES]
        entities += [{"what": {"reference": ref},
                      "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                               "code": "2", "display": "System Object"}} for ref in refs]
        if self.query is not None:
            entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                      "code": "2"},
                             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                      "code": "24", "display": "Query"},
                             "description": self.query[:1000]})
        if self.request_id:
            entities.append({"what": {"identifier": {"value": self.request_id}},
                             "type": {"system": BALP_ENTITY_TYPE, "code": "XrequestId"}})
        entities += [{"what": {"reference": f"Consent/{cid}"},
                      "description": "Consent that permitted this access"}
                     for cid in sorted(self.consents)]
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
            event["outcomeDesc"] = detail[:1000]
        purposes = self.purposes_of() if self.purposes_of is not None else []
        if purposes:
            event["purposeOfEvent"] = purposes
        return event


async def _exists(store: ResourceStore, patient_id: str) -> bool:
    row = await store.conn.execute(select(RES.c.pk).where(RES.c.resource_type == "Patient",
                                                          RES.c.id == patient_id))
    return row.first() is not None
