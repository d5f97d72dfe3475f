"""QuestionnaireResponse/$extract (SDC observation-based extraction), written in one transaction.

Instance level extracts a stored response; type level takes the response in the body (or as
the `questionnaire-response` parameter), stores it first (unchanged content with a known id
is not written again) and extracts that. Only a `completed` or `amended` response that is valid
against its Questionnaire is extracted. Each Observation is checked by the same write checks as
any write (so it must conform to its profile), carries `derivedFrom` the response and an
identifier derived from response id, version and item; a Provenance (target: the new
Observations, entity: the response version, agent: the response's author and the caller)
covers them. Idempotent: Observations whose identifier exists are not created again, so a
second $extract of the same response version creates nothing. The answer is a
transaction-response Bundle: 201 for what was created, 200 for what already existed.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..conformance.engine import Conformance, reject_errors
from ..conformance.extract import ExtractedObservation, ExtractError
from ..conformance.questionnaire import COMPLETE
from ..conformance.validator import ConformanceError
from ..fhir import dates
from ..fhir.outcome import FhirError, bad_request
from ..store.records import StoredResource
from .params import conformance, mapping
from .registry import Operation, OperationCall, OperationResult

IDENTIFIER_SYSTEM = "https://pgo-work.nl/fhir/sid/extracted-observation"
"""Identifier system of extracted Observations: value = response version + item key."""
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


async def _response(call: OperationCall) -> tuple[StoredResource, bool | None]:
    """The response to extract, and at type level whether storing it created it (None at
    instance level, where nothing is written)."""
    store = call.store
    if call.level == "instance":
        assert call.id is not None
        return await store.read("QuestionnaireResponse", call.id), None
    body = call.body
    if body is not None and body.get("resourceType") == "Parameters":
        body = mapping(call, "questionnaire-response")
    if not isinstance(body, dict) or body.get("resourceType") != "QuestionnaireResponse":
        raise bad_request("POST a QuestionnaireResponse, or a Parameters with "
                          "'questionnaire-response'", "questionnaire-response")
    checked = await call.runtime.check_write_in(store, body)
    rid = body.get("id")
    if isinstance(rid, str) and await store.exists("QuestionnaireResponse", rid):
        current = await store.read("QuestionnaireResponse", rid)
        if _content(current.json()) == _content(checked):
            return current, False
    if isinstance(rid, str):
        return await store.update(checked, rid)
    return await store.create(checked), True


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "id")}


def _identifier(response: StoredResource, key: str) -> dict[str, str]:
    return {"system": IDENTIFIER_SYSTEM,
            "value": f"QuestionnaireResponse/{response.id}/_history/{response.version_id}#{key}"}


async def _existing(call: OperationCall, identifier: dict[str, str]) -> StoredResource | None:
    value = identifier["value"].replace(",", "\\,")
    query = [("identifier", f"{identifier['system']}|{value}")]
    found = await call.store.count_matches(call.runtime.parser.parse("Observation", query), limit=1)
    return found[0] if found else None


async def _plan(call: OperationCall, engine: Conformance,
                response: StoredResource) -> list[ExtractedObservation]:
    qr = response.json()
    if qr.get("status") not in COMPLETE:
        raise FhirError(422, "business-rule", "Only a completed or amended response is extracted",
                        "QuestionnaireResponse.status")
    canonical = qr.get("questionnaire")
    questionnaire = (await engine.find_questionnaire(call.store, call.runtime.parser, canonical)
                     if isinstance(canonical, str) else None)
    if questionnaire is None:
        raise FhirError(422, "not-found", f"Questionnaire {canonical} is not known",
                        "QuestionnaireResponse.questionnaire")
    reject_errors(engine.questionnaires.validate(qr, questionnaire))
    try:
        return engine.extractor.extract(qr, questionnaire)
    except (ExtractError, ConformanceError) as exc:
        raise FhirError(422, "processing", f"The response cannot be extracted: {exc}") from exc


def _agents(call: OperationCall, qr: dict[str, Any]) -> list[dict[str, Any]]:
    agents = []
    if isinstance(qr.get("author"), dict):
        agents.append({"type": _participant("author"), "who": qr["author"]})
    user = _caller(call.store.access)
    if isinstance(user, str) and user != (qr.get("author") or {}).get("reference"):
        agents.append({"type": _participant("enterer"), "who": {"reference": user}})
    if not agents:
        agents.append({"type": _participant("assembler"), "who": {"display": "pgo-work $extract"}})
    return agents


def _caller(policy: object) -> str | None:
    """The caller's own resource (`fhirUser`), from the request's access policy if it has one."""
    for candidate in [policy, *getattr(policy, "all_of", [])]:
        user = getattr(getattr(candidate, "principal", None), "fhir_user", None)
        if isinstance(user, str):
            return user
    return None


def _participant(code: str) -> dict[str, Any]:
    return {"coding": [{"system": PARTICIPANT, "code": code}]}


def _entry(call: OperationCall, stored: StoredResource, created: bool) -> dict[str, Any]:
    base = call.runtime.base_url
    return {"fullUrl": f"{base}/{stored.resource_type}/{stored.id}", "resource": stored.json(),
            "response": {"status": "201 Created" if created else "200 OK",
                         "location": f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}",
                         "etag": f'W/"{stored.version_id}"'}}


async def extract(call: OperationCall) -> OperationResult:
    engine = conformance(call)
    response, response_created = await _response(call)
    planned = await _plan(call, engine, response)
    qr = response.json()
    ids: dict[str, str] = {}
    existing: dict[str, StoredResource] = {}
    for obs in planned:
        found = await _existing(call, _identifier(response, obs.key))
        if found is not None:
            existing[obs.key] = found
        ids[obs.key] = found.id if found else str(uuid.uuid4())
    entries: list[dict[str, Any]] = []
    if response_created is not None:
        entries.append(_entry(call, response, response_created))
    created: list[StoredResource] = []
    for obs in planned:
        if obs.key in existing:
            entries.append(_entry(call, existing[obs.key], False))
            continue
        resource = {**obs.resource, "identifier": [_identifier(response, obs.key)],
                    "derivedFrom": [{"reference": f"QuestionnaireResponse/{response.id}"}]}
        if obs.members:
            resource["hasMember"] = [{"reference": f"Observation/{ids[m]}"} for m in obs.members]
        try:
            checked = await call.runtime.check_write_in(call.store, resource)
        except FhirError as exc:
            for issue in exc.issues:
                issue.diagnostics = f"Observation extracted from item '{obs.link_id}': {issue.diagnostics}"
            raise
        stored = await call.store.create(checked, ids[obs.key])
        created.append(stored)
        entries.append(_entry(call, stored, True))
    if created:
        provenance = {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{s.id}"} for s in created],
            "recorded": dates.to_instant(dates.utcnow()),
            "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE"}]},
            "agent": _agents(call, qr),
            "entity": [{"role": "source", "what": {
                "reference": f"QuestionnaireResponse/{response.id}/_history/{response.version_id}"}}],
        }
        stored = await call.store.create(await call.runtime.check_write_in(call.store, provenance))
        entries.append(_entry(call, stored, True))
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response",
              "entry": entries}
    return OperationResult(bundle)


OPERATIONS = [
    Operation("extract", frozenset({"type", "instance"}), extract,
              frozenset({"QuestionnaireResponse"}), affects_state=True,
              definition="https://pgo-work.nl/fhir/OperationDefinition/QuestionnaireResponse-extract"),
]
