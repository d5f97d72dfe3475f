"""A real FHIR client, unmodified, against a live server: fhirpy create, read, update, search, delete."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from service.config import Settings

from .conftest import system_token
from .helpers import TAG_SYSTEM
from .live_server import live_server


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as base:
        yield base


@pytest.fixture(scope="module")
def access_token(settings: Settings, base_url: str) -> str:
    """A system token whose audience is the live server's own base URL."""
    return system_token(settings.model_copy(update={"base_url": base_url}))


def test_fhirpy_round_trip(base_url: str, access_token: str, tag: str) -> None:
    async def scenario() -> None:
        client = AsyncFHIRClient(base_url, authorization=f"Bearer {access_token}",
                                 extra_headers={"Content-Type": "application/fhir+json"})
        patient = client.resource("Patient", name=[{"family": "Bakker", "given": ["Sanne"]}],
                                  birthDate="1991-02-03", meta={"tag": [{"system": TAG_SYSTEM, "code": tag}]})
        await patient.save()
        assert patient.id and patient["meta"]["versionId"] == "1"

        hours = client.resource(
            "Observation", status="final",
            code={"coding": [{"system": "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation",
                              "code": "contract-hours-per-week"}]},
            subject=patient.to_reference(),
            effectivePeriod={"start": "2025-01-01"},
            valueQuantity={"value": 24, "unit": "h/wk", "system": "http://unitsofmeasure.org",
                           "code": "h/wk"},
            meta={"tag": [{"system": TAG_SYSTEM, "code": tag}]})
        await hours.save()

        fetched = await client.reference("Patient", patient.id).to_resource()
        assert fetched["name"][0]["family"] == "Bakker"

        fetched["name"][0]["family"] = "Bakker-de Jong"
        await fetched.save()
        again = await client.reference("Patient", patient.id).to_resource()
        assert again["meta"]["versionId"] == "2"
        assert again["name"][0]["family"] == "Bakker-de Jong"

        found = await client.resources("Observation").search(
            patient=patient.id, **{"value-quantity": "ge20"}).fetch_all()
        assert [o.id for o in found] == [hours.id]
        by_name = await client.resources("Patient").search(
            family="bakker-de", _tag=f"{TAG_SYSTEM}|{tag}").fetch()
        assert [p.id for p in by_name] == [patient.id]

        await hours.delete()
        with pytest.raises(ResourceNotFound):
            await client.reference("Observation", hours.id).to_resource()
        remaining = await client.resources("Observation").search(patient=patient.id).fetch_all()
        assert remaining == []

    asyncio.run(scenario())
