"""Audit: one AuditEvent per request that touches patient data, in the style of IHE BALP.

The trail collects what the store returned and wrote during the request; `finish` writes the
AuditEvent through the same connection before commit, so a write and its AuditEvent commit
together and a read that cannot be audited does not happen. A failed request is audited in a
transaction of its own after the rollback. Each AuditEvent names the patient(s) as entities,
which puts it in their compartment: `AuditEvent?patient=...` is the patient's answer to "who
looked at my work data, when, and why".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..fhir import dates
from ..store.access import SystemAccess
from ..store.records import StoredResource
from ..store.repository import ResourceStore
from ..store.tables import Compartment, Resource
from .principal import Principal

COMP = Compartment.__table__
RES = Resource.__table__
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACTIONS = {"read": "R", "vread": "R", "search-type": "E", "search-system": "E", "history-instance": "R",
           "history-type": "R", "history-system": "R", "create": "C", "update": "U", "patch": "U",
           "delete": "D", "transaction": "E", "batch": "E", "operation": "E"}
MAX_ENTITIES = 200


@dataclass
class AuditTrail:
    principal: Principal
    interaction: str = "read"
    query: str | None = None
    client_address: str | None = None
    consents: set[str] = field(default_factory=set)
    purposes: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[int, str] = field(default_factory=dict)
    written: dict[int, str] = field(default_factory=dict)
    patients_hint: set[str] = field(default_factory=set)
    target: tuple[str, str] | None = None
    consent_lookup: Any = None
    """A function patient -> Consent ids that grant this caller access (from ConsentPolicy)."""

    def start(self, interaction: str, query: str | None = None,
              target: tuple[str, str] | None = None) -> None:
        self.interaction = interaction
        self.query = query
        self.target = target

    def observe(self, resources: list[StoredResource], wrote: bool = False) -> None:
        target = self.written if wrote else self.seen
        for r in resources:
            target[r.pk] = r.ref

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
        patients = await self._patients(store, outcome >= 400)
        touched = (self.seen, self.written)
        self.seen, self.written = {}, {}  # a batch completes once per entry
        if not patients:
            return
        if self.consent_lookup is not None:
            for patient in patients:
                self.consents.update(self.consent_lookup(patient))
        event = self.event(patients, outcome, detail, touched)
        await ResourceStore(store.conn, store.config, SystemAccess()).create(event)

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
        if self.purposes:
            event["purposeOfEvent"] = self.purposes
        elif p.is_patient:
            event["purposeOfEvent"] = [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PATRQT",
                "display": "patient requested"}]}]
        return event


async def _exists(store: ResourceStore, patient_id: str) -> bool:
    row = await store.conn.execute(select(RES.c.pk).where(RES.c.resource_type == "Patient",
                                                          RES.c.id == patient_id))
    return row.first() is not None
