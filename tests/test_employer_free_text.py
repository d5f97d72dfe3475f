"""An employer never reads free text that was not written for them (issue 11 item 2).

Work context is the one category an employer may read, but its free text can tell a complaint
in any words ("op geleide van klachten"). Every record resource with such text carries the
label content-label|clinical-text (rule clinical-free-text), which the employer side never reads
whatever the Consent says: the resource is hidden as if it did not exist. Text written for the
employer (extension employer-text, an employer statement) does not count. Everyone else (the
occupational physician with work-context consent) reads these resources as before.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from . import test_employer_view as view
from .conformance_helpers import example
from .consent_helpers import grant, permit
from .consent_world import Actors, entries
from .helpers import create
from .test_employer_view import (
    ALL_CATEGORIES,
    READ_WRITE,
    employer_accounts,
    everything_the_employer_gets,
    secret_record,
)

manager = view.manager
"""The line-manager fixture of test_employer_view (a PractitionerRole with code line-manager)."""
EMPLOYER_TEXT = "https://pgo-work.nl/fhir/StructureDefinition/employer-text"
CONTENT_LABEL = "https://pgo-work.nl/fhir/CodeSystem/content-label"
COMPLAINTS = {
    "goal-description": "GEHEIM-DOELKLACHT-F11",
    "goal-note": "GEHEIM-DOELNOTITIE-F11",
    "plan-description": "GEHEIM-PLANKLACHT-F11",
    "plan-activity": "GEHEIM-FASEKLACHT-F11",
    "observation-note": "GEHEIM-WERKNOTITIE-F11",
    "narrative": "GEHEIM-NARRATIEF-F11",
}
WRITTEN_FOR_EMPLOYER = "Werkt vanaf maandag drie ochtenden per week."


def _for_employer(resource: dict[str, Any], text: str) -> dict[str, Any]:
    return {**resource, "extension": [{"url": EMPLOYER_TEXT, "valueString": text}]}


def free_text_record(client: TestClient, tag: str) -> dict[str, str]:
    """The record of test_employer_view plus work-context resources with a complaint in free
    text (each also carrying employer text, which must not save them) and a goal whose only
    text was written for the employer."""
    ids = secret_record(client, tag)
    pid = ids["patient"]

    def add(key: str, resource: dict[str, Any]) -> None:
        ids[key] = create(client, resource)["id"]

    clean = example("work-goal", "valid-contract-hours-target.json", tag, pid)
    clean["description"] = {"coding": clean["target"][0]["measure"]["coding"]}
    add("clean-goal", _for_employer(clean, WRITTEN_FOR_EMPLOYER))
    goal = example("work-goal", "valid-contract-hours-target.json", tag, pid)
    goal["description"] = {"text": COMPLAINTS["goal-description"]}
    add("goal-description", _for_employer(goal, WRITTEN_FOR_EMPLOYER))
    goal = example("work-goal", "valid-contract-hours-target.json", tag, pid)
    goal["description"] = {"coding": goal["target"][0]["measure"]["coding"]}
    goal["note"] = [{"text": COMPLAINTS["goal-note"]}]
    add("goal-note", goal)
    plan = example("rtw-careplan", "valid-phased-plan.json", tag, pid)
    plan["goal"] = [{"reference": f"Goal/{ids['clean-goal']}"}]
    plan["description"] = COMPLAINTS["plan-description"]
    add("plan-description", _for_employer(plan, WRITTEN_FOR_EMPLOYER))
    plan = example("rtw-careplan", "valid-phased-plan.json", tag, pid)
    plan["goal"] = [{"reference": f"Goal/{ids['clean-goal']}"}]
    plan["activity"][0]["detail"]["description"] = COMPLAINTS["plan-activity"]
    add("plan-activity", plan)
    hours = example("contract-hours", "valid-28h-since-2024.json", tag, pid)
    hours["note"] = [{"text": COMPLAINTS["observation-note"]}]
    add("observation-note", hours)
    hours = example("contract-hours", "valid-28h-since-2024.json", tag, pid)
    hours["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                     f'{COMPLAINTS["narrative"]}</div>'}
    add("narrative", hours)
    return ids


def _type(key: str) -> str:
    return ("Goal" if key.startswith("goal") or key == "clean-goal"
            else "CarePlan" if key.startswith("plan") else "Observation")


@pytest.fixture
def world(client: TestClient, actors: Actors, settings: Settings, manager: str,
          tag: str) -> dict[str, str]:
    """The broadest consent for the employer side, and a work-context consent for the
    occupational physician."""
    ids = free_text_record(client, tag)
    grant(client, ids["patient"], [
        actors.permit("employer", actions=READ_WRITE),
        actors.permit("employer", labels=ALL_CATEGORIES, actions=READ_WRITE),
        permit(manager, actions=READ_WRITE),
        permit(manager, labels=ALL_CATEGORIES, actions=READ_WRITE),
        actors.permit("occupational-physician", labels=["work-context"]),
    ], f"{tag}-consent")
    return ids


@pytest.mark.parametrize("account", ["employer", "employer-hr", "line-manager"])
def test_the_employer_reads_no_clinical_free_text(anon: TestClient, settings: Settings,
                                                  actors: Actors, manager: str,
                                                  world: dict[str, str], account: str) -> None:
    headers = employer_accounts(settings, actors, manager)[account]
    text, seen, document, printed = everything_the_employer_gets(anon, headers, world)
    for key in COMPLAINTS:  # the CarePlans too: $everything, search and _include cover them
        resp = anon.get(f"/fhir/{_type(key)}/{world[key]}", headers=headers)
        assert resp.status_code == 404, (key, resp.status_code)
        assert anon.get(f"/fhir/{_type(key)}/{world[key]}/_history",
                        headers=headers).status_code == 404, key
        assert f"{_type(key)}/{world[key]}" not in seen, key
    more = [anon.get(f"/fhir/{rtype}", params=params, headers=headers).json() for rtype, params in (
        ("CarePlan", {"patient": world["patient"], "_include": "CarePlan:goal"}),
        ("Goal", {"patient": world["patient"], "_revinclude": "CarePlan:goal"}),
        ("CarePlan", {"_id": world["plan-activity"]}),
        ("Goal/_history", {}),
        ("CarePlan/_history", {}))]
    everything = text + document + printed + orjson.dumps(more).decode()
    for what, secret in COMPLAINTS.items():
        assert secret not in everything, (account, what)
    # what was written for the employer still reaches them, in the resource and the summary
    clean = anon.get(f"/fhir/Goal/{world['clean-goal']}", headers=headers)
    assert clean.status_code == 200, clean.text
    assert WRITTEN_FOR_EMPLOYER in printed


def test_the_occupational_physician_still_reads_them(anon: TestClient, actors: Actors,
                                                     world: dict[str, str]) -> None:
    headers = actors.headers["occupational-physician"]
    for key, secret in COMPLAINTS.items():
        resp = anon.get(f"/fhir/{_type(key)}/{world[key]}", headers=headers)
        assert resp.status_code == 200, (key, resp.text)
        assert secret in resp.text, key
        labels = {(s["system"], s["code"]) for s in resp.json()["meta"]["security"]}
        assert (CONTENT_LABEL, "clinical-text") in labels, key
    found = anon.get("/fhir/CarePlan", params={"patient": world["patient"]}, headers=headers)
    assert {r["id"] for r in entries(found.json())} >= {world["plan-description"],
                                                         world["plan-activity"]}


def test_a_later_version_without_the_text_stays_hidden(client: TestClient, anon: TestClient,
                                                       settings: Settings, actors: Actors,
                                                       manager: str, world: dict[str, str]) -> None:
    """Labels are the union over versions: removing the note does not expose the old one."""
    rid = world["observation-note"]
    current = client.get(f"/fhir/Observation/{rid}").json()
    current.pop("note")
    current["meta"].pop("security", None)
    resp = client.put(f"/fhir/Observation/{rid}", json=current,
                      headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    headers = employer_accounts(settings, actors, manager)["employer"]
    assert anon.get(f"/fhir/Observation/{rid}", headers=headers).status_code == 404
    assert anon.get(f"/fhir/Observation/{rid}/_history/1", headers=headers).status_code == 404
    history = anon.get("/fhir/Observation/_history", headers=headers).text
    assert COMPLAINTS["observation-note"] not in history


def test_the_employer_cannot_write_clinical_free_text(anon: TestClient, actors: Actors,
                                                      world: dict[str, str], tag: str) -> None:
    goal = example("work-goal", "valid-contract-hours-target.json", tag, world["patient"])
    goal["note"] = [{"text": "GEHEIM-SCHRIJFKLACHT-F11"}]
    resp = anon.post("/fhir/Goal", json=goal, headers={**actors.headers["employer"],
                                                       "Content-Type": "application/fhir+json"})
    assert resp.status_code == 403, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
