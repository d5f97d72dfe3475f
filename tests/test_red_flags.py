"""Patient/$late-effects-signals: the six red flags of the guide for labour experts, computed
from the record under the caller's access.

Each demo patient raises exactly the flags `expected-red-flags.json` names; every threshold of
`profiles/rules/red-flags.json` is tested just below and at its edge; an empty record raises
nothing; a labour expert without consent for absence data gets those flags as "not
assessable" and an answer that holds no trace of the hidden data.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import PROJECT_ROOT, Settings
from service.demo.loader import DATA

from .consent_helpers import grant, permit
from .helpers import contract_hours, create, patient
from .work_helpers import (
    BASE,
    RED_FLAG,
    SELF_REPORTED,
    as_patient,
    as_professional,
    flags,
    late_effect,
    named,
    parts,
    professional,
    seed_demo,
    sick_leave,
    wia,
)

RULES = orjson.loads((PROJECT_ROOT / "profiles/rules/red-flags.json").read_bytes())
EXPECTED: dict[str, list[str]] = orjson.loads((DATA / "expected-red-flags.json").read_bytes())
ALL_FLAGS = [f["code"] for f in RULES["flags"]]


@pytest.fixture(scope="module")
def demo(settings: Settings, client: TestClient) -> None:
    seed_demo(settings)


def signals(client: TestClient, pid: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = client.get(f"/fhir/Patient/{pid}/$late-effects-signals", headers=headers or {})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["resourceType"] == "Parameters"
    return body


def raised(body: dict[str, Any]) -> set[str]:
    return {code for code, p in flags(body).items() if parts(p)["status"] == "raised"}


def status_of(client: TestClient, pid: str, flag: str) -> str:
    return str(parts(flags(signals(client, pid))[flag])["status"])


def new_patient(client: TestClient, tag: str) -> str:
    return str(create(client, patient(tag))["id"])


# -- the demo patients ---------------------------------------------------------------------------
@pytest.mark.parametrize("pid", sorted(EXPECTED))
def test_each_demo_patient_raises_exactly_its_flags(client: TestClient, demo: None, pid: str) -> None:
    body = signals(client, pid)
    assert list(flags(body)) == ALL_FLAGS  # all six, in the guide's order
    assert raised(body) == set(EXPECTED[pid])
    assert {parts(p)["status"] for p in flags(body).values()} <= {"raised", "not-raised"}
    assert named(body, "raisedCount")[0]["valueInteger"] == len(EXPECTED[pid])
    assert named(body, "patient")[0]["valueReference"] == {"reference": f"Patient/{pid}"}


def test_a_raised_flag_carries_evidence_advice_and_next_steps(client: TestClient, demo: None) -> None:
    body = signals(client, "pat-peter")
    flag = flags(body)["sick-leave-history"]
    evidence = [parts(p) for p in flag["part"] if p["name"] == "evidence"]
    assert evidence == [{"reference": {"reference": "Observation/obs-peter-sick-leave-2019"},
                         "start": "2019-03-04", "end": "2021-02-28", "value": "728 days, 100 %"}]
    assert "728 days" in parts(flag)["reason"]
    advice = {parts(p)["language"]: parts(p)["text"] for p in flag["part"] if p["name"] == "advice"}
    assert advice["nl"].startswith("Let op frequent verzuim") and "sick leave" in advice["en"]
    steps = [parts(p)["code"]["code"] for p in flag["part"] if p["name"] == "nextStep"]
    assert steps[:2] == ["discuss-professional-secrecy", "refer-occupational-physician"]
    texts = {parts(p)["language"]: parts(p)["text"] for p in
             next(p for p in flag["part"] if p["name"] == "nextStep")["part"] if p["name"] == "text"}
    assert "beroepsgeheim" in texts["nl"] and "professional secrecy" in texts["en"]
    # the answer's own list of next steps: the union over the raised flags, once each
    union = [parts(p)["code"]["code"] for p in named(body, "nextStep")]
    assert union == ["discuss-professional-secrecy", "refer-occupational-physician", "consider-baco-kag",
                     "explain-legislation-finances"]
    wia_flag = parts(flags(body)["wia-benefit"])
    assert wia_flag["evidence"][0]["valueReference"]["reference"] == "Observation/obs-peter-wia"


def test_a_flag_not_raised_gives_no_next_steps(client: TestClient, demo: None) -> None:
    flag = flags(signals(client, "pat-anna"))["reduced-contract-hours"]
    assert parts(flag)["raised"] is False
    assert not [p for p in flag["part"] if p["name"] == "nextStep"]
    assert [p for p in flag["part"] if p["name"] == "advice"]  # what to watch for, always


def test_the_patient_sees_the_same_flags_for_their_own_record(client: TestClient, settings: Settings,
                                                              demo: None) -> None:
    body = signals(client, "pat-marieke", as_patient(settings, "pat-marieke"))
    assert raised(body) == set(EXPECTED["pat-marieke"])


# -- an empty record -----------------------------------------------------------------------------
def test_an_empty_record_raises_nothing(client: TestClient, tag: str) -> None:
    body = signals(client, new_patient(client, tag))
    assert raised(body) == set()
    for code, flag in flags(body).items():
        assert parts(flag)["status"] == "not-raised" and parts(flag)["raised"] is False, code
        assert "evidence" not in parts(flag), code
    assert named(body, "raisedCount")[0]["valueInteger"] == 0
    assert named(body, "nextStep") == []


# -- the edges of every threshold ----------------------------------------------------------------
@pytest.mark.parametrize("flag", sorted(SELF_REPORTED))
@pytest.mark.parametrize(("severity", "expected"), [("mild", "not-raised"), ("moderate", "raised")])
def test_self_reports_raise_at_moderate(client: TestClient, tag: str, flag: str, severity: str,
                                        expected: str) -> None:
    pid = new_patient(client, tag)
    create(client, late_effect(tag, pid, flag, severity, "2026-11-01"))
    assert status_of(client, pid, flag) == expected


def test_the_latest_self_report_counts(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, late_effect(tag, pid, "burnout-like-complaints", "severe", "2025-03-01"))
    create(client, late_effect(tag, pid, "burnout-like-complaints", "mild", "2026-10-01"))
    assert status_of(client, pid, "burnout-like-complaints") == "not-raised"


@pytest.mark.parametrize(("later", "expected"), [(35.5, "not-raised"), (35, "raised")])
def test_contract_hours_fall_of_at_least_one_hour(client: TestClient, tag: str, later: float,
                                                   expected: str) -> None:
    pid = new_patient(client, tag)
    create(client, contract_hours(tag, pid, 36, "2020-01-01", "2023-12-31"))
    create(client, contract_hours(tag, pid, later, "2024-01-01"))
    assert status_of(client, pid, "reduced-contract-hours") == expected


def test_concurrent_contracts_add_up(client: TestClient, tag: str) -> None:
    """Two jobs of 20 and 16 hours, then one of 36: no fall."""
    pid = new_patient(client, tag)
    create(client, contract_hours(tag, pid, 20, "2022-01-01", "2024-12-31"))
    create(client, contract_hours(tag, pid, 16, "2022-01-01", "2024-12-31"))
    create(client, contract_hours(tag, pid, 36, "2025-01-01"))
    assert status_of(client, pid, "reduced-contract-hours") == "not-raised"


# Frequent absence in the year up to the evaluation date, and a long absence being longer than
# six weeks: tests/test_red_flags_edges.py (issue 11 changed both edges).
def test_two_short_episodes_are_not_frequent(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, sick_leave(tag, pid, "2026-03-02", "2026-03-04"))
    create(client, sick_leave(tag, pid, "2026-04-06", "2026-04-08"))
    assert status_of(client, pid, "sick-leave-history") == "not-raised"


def test_an_ongoing_absence_is_not_a_history(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, sick_leave(tag, pid, "2025-06-01", pct=50))
    assert status_of(client, pid, "sick-leave-history") == "not-raised"


@pytest.mark.parametrize(("status", "end", "expected"), [
    ("none", None, "not-raised"), ("partial", "2023-04-30", "raised"), ("full", None, "raised")])
def test_a_wia_benefit_now_or_in_the_past(client: TestClient, tag: str, status: str, end: str | None,
                                          expected: str) -> None:
    pid = new_patient(client, tag)
    create(client, wia(tag, pid, status, "2020-05-01", end))
    assert status_of(client, pid, "wia-benefit") == expected


# -- under the caller's access -------------------------------------------------------------------
def _hidden(client: TestClient, pid: str) -> list[dict[str, Any]]:
    """Everything of the patient labelled absence-benefits (as the operator sees it)."""
    out = []
    for rtype in ("Observation", "QuestionnaireResponse"):
        resp = client.get(f"/fhir/{rtype}", params={"patient": pid, "data-category": "absence-benefits",
                                                    "_count": "200"})
        out += [e["resource"] for e in resp.json().get("entry", [])]
    return out


def _dates(resource: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("start", "end", "effectiveDateTime", "authored"):
            found.add(node[:10])

    walk({k: v for k, v in resource.items() if k != "meta"})
    return found


def test_a_labour_expert_without_absence_consent_gets_no_trace_of_it(
        client: TestClient, settings: Settings, tag: str, demo: None) -> None:
    expert = professional(client, tag, "labour-expert")
    grant(client, "pat-marieke", [permit(f"PractitionerRole/{expert}",
                                         labels=["work-context", "self-reported-health"])], tag)
    body = signals(client, "pat-marieke", as_professional(settings, expert, "labour-expert"))
    status = {code: parts(p)["status"] for code, p in flags(body).items()}
    assert status == {"work-private-balance": "not-raised", "burnout-like-complaints": "not-raised",
                      "reduced-contract-hours": "raised", "work-problems-no-clear-cause": "raised",
                      "sick-leave-history": "not-assessable", "wia-benefit": "not-assessable"}
    hidden_flag = parts(flags(body)["sick-leave-history"])
    assert "raised" not in hidden_flag and "evidence" not in hidden_flag
    assert "not assessable with your access" in hidden_flag["reason"].lower()
    assert named(body, "notAssessableCount")[0]["valueInteger"] == 2

    hidden = _hidden(client, "pat-marieke")
    assert len(hidden) >= 9  # eight sick-leave episodes, the work status, the questionnaire
    visible_dates = set().union(*[_dates(r) for r in _visible(client, settings, expert)])
    text = orjson.dumps(body).decode()
    for resource in hidden:
        assert resource["id"] not in text
        for when in _dates(resource) - visible_dates:
            assert when not in text, (resource["id"], when)
    for derived in ("347 days", "100 %", "episode", "verzuimperiode"):
        assert derived not in text


def _visible(client: TestClient, settings: Settings, expert: str) -> list[dict[str, Any]]:
    """What the labour expert may read of the record (dates they already know)."""
    resp = client.get("/fhir/Observation", params={"patient": "pat-marieke", "_count": "200"},
                      headers=as_professional(settings, expert, "labour-expert"))
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def test_the_same_expert_with_absence_consent_can_assess_it(
        client: TestClient, settings: Settings, tag: str, demo: None) -> None:
    expert = professional(client, tag, "labour-expert")
    grant(client, "pat-marieke", [permit(f"PractitionerRole/{expert}", labels=[
        "work-context", "self-reported-health", "absence-benefits"])], tag)
    body = signals(client, "pat-marieke", as_professional(settings, expert, "labour-expert"))
    assert raised(body) == set(EXPECTED["pat-marieke"])


def test_a_professional_without_any_consent_gets_not_found(client: TestClient, settings: Settings,
                                                          tag: str, demo: None) -> None:
    expert = professional(client, tag, "labour-expert")
    resp = client.get("/fhir/Patient/pat-marieke/$late-effects-signals",
                      headers=as_professional(settings, expert, "labour-expert"))
    assert resp.status_code == 404 and resp.json()["resourceType"] == "OperationOutcome"


def test_unknown_patient_and_wrong_level(client: TestClient) -> None:
    resp = client.get("/fhir/Patient/no-such-patient/$late-effects-signals")
    assert resp.status_code == 404 and resp.json()["resourceType"] == "OperationOutcome"
    resp = client.get("/fhir/Patient/$late-effects-signals")
    assert resp.status_code == 404 and resp.json()["issue"][0]["code"] == "not-supported"


# -- the rules are data, with their sources ------------------------------------------------------
def test_every_flag_and_threshold_in_the_rules_file_has_a_source(client: TestClient) -> None:
    codes = client.get("/fhir/CodeSystem/late-effect-red-flag").json()["concept"]
    assert [c["code"] for c in codes] == ALL_FLAGS
    steps = {c["code"] for c in client.get("/fhir/CodeSystem/late-effect-next-step").json()["concept"]}
    assert steps == set(RULES["nextSteps"])
    for flag in RULES["flags"]:
        assert flag["thresholds"] and all(t["source"] for t in flag["thresholds"].values()), flag["code"]
        assert flag["advice"]["nl"] and flag["advice"]["en"] and flag["advice"]["source"]
        assert set(flag["nextSteps"]) <= steps
        assert flag["evidence"]["dataCategory"] in {
            "work-context", "functional-capacity", "absence-benefits", "self-reported-health"}
    assert RULES["codeSystem"] == RED_FLAG and RULES["nextStepSystem"].startswith(BASE)
    definition = client.get("/fhir/OperationDefinition/Patient-late-effects-signals").json()
    assert definition["code"] == "late-effects-signals" and definition["instance"] is True
