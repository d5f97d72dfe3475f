"""SMART's Python `fhirclient` (4.4.0), unmodified, against a live server: it parses every
answer into its R4 models, so one element of the wrong type anywhere in a search Bundle makes
the whole search fail to parse (issue 15: invalid base content used to be stored verbatim).
Also after the XML work: JSON answers stay exactly what fhirclient reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from service.config import Settings

from .conftest import system_token
from .helpers import TAG_SYSTEM, contract_hours
from .live_server import live_server


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[smart_client.FHIRClient]:
    with live_server(settings) as base:
        token = system_token(settings.model_copy(update={"base_url": base}))
        fhir = smart_client.FHIRClient(settings={"app_id": "pgo-work-tests", "api_base": base})
        fhir.server.session.headers["Authorization"] = f"Bearer {token}"
        yield fhir


def test_fhirclient_creates_reads_and_searches(server: smart_client.FHIRClient, tag: str) -> None:
    patient = Patient({"name": [{"family": "Visser", "given": ["Anna"]}], "gender": "female",
                       "birthDate": "1980-04-05", "active": True,
                       "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}})
    created = patient.create(server.server)
    pid = created["id"]
    for hours in (32, 24):
        Observation(contract_hours(tag, pid, hours, "2024-01-01")).create(server.server)

    read = Patient.read(pid, server.server)
    assert read.name[0].family == "Visser" and read.active is True
    assert read.birthDate.isostring == "1980-04-05"

    found = Observation.where(struct={"patient": pid, "_tag": f"{TAG_SYSTEM}|{tag}"}) \
        .perform(server.server)
    assert isinstance(found, Bundle) and found.total == 2
    assert sorted(e.resource.valueQuantity.value for e in found.entry) == [24, 32]
    # A search over all Patients parses too: nothing stored can break a client's models.
    everyone = Patient.where(struct={"_count": "50"}).perform(server.server)
    assert all(isinstance(e.resource, Patient) for e in everyone.entry or [])


def test_fhirclient_is_refused_invalid_base_content(server: smart_client.FHIRClient) -> None:
    """What fhirclient's own models would reject, the server rejects at the write (422)."""
    from fhirclient.server import FHIRServer

    srv: FHIRServer = server.server
    resp = srv.session.post(f"{srv.base_uri}Patient", json={"resourceType": "Patient",
                                                             "active": "yes"},
                            headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 422
    assert "Patient.active" in resp.text
