"""QuestionnaireResponse validation against its Questionnaire on every write: ours (profiles/)
or one stored on the server."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conformance_helpers import (
    QUESTIONNAIRE,
    example,
    example_files,
    expected_expression,
    expressions,
    new_patient,
    post,
    questionnaire_folders,
)
from .helpers import FHIR_JSON, TAG_SYSTEM, tagged

FORMS = questionnaire_folders()
VALID = example_files("valid", FORMS) + example_files("response", FORMS)
INVALID = example_files("invalid", FORMS)


def test_every_questionnaire_has_examples() -> None:
    assert set(FORMS) == {"bar", "late-effects-signals", "load-capacity", "vulnerable-groups",
                          "work-situation-intake", "work-ability"}
    for form in FORMS:
        assert (form, "response-sample.json") in VALID


@pytest.mark.parametrize(("folder", "name"), VALID, ids=[f"{f}/{n}" for f, n in VALID])
def test_valid_response_is_accepted(client: TestClient, tag: str, folder: str, name: str) -> None:
    resp = post(client, example(folder, name, tag, new_patient(client, tag)))
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(("folder", "name"), INVALID, ids=[f"{f}/{n}" for f, n in INVALID])
def test_invalid_response_is_refused_with_its_expression(client: TestClient, tag: str, folder: str,
                                                         name: str) -> None:
    resp = post(client, example(folder, name, tag, new_patient(client, tag)))
    assert resp.status_code == 422, resp.text
    assert expected_expression(folder, name) in expressions(resp.json())


def _without(items: list[dict[str, Any]], link_id: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if item["linkId"] == link_id:
            continue
        out.append({**item, "item": _without(item["item"], link_id)} if "item" in item else item)
    return out


def test_in_progress_may_lack_required_items_but_not_break_rules(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    sample = example("vulnerable-groups", "response-sample.json", tag, pid)
    partial = {**sample, "status": "in-progress", "item": _without(sample["item"], "vg-young-adult")}
    assert post(client, partial).status_code == 201
    completed = {**partial, "status": "completed"}
    resp = post(client, completed)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["QuestionnaireResponse.item[0]"]
    wrong = example("vulnerable-groups", "invalid-wrong-answer-type.json", tag, pid)
    resp = post(client, {**wrong, "status": "in-progress"})
    assert resp.status_code == 422
    assert post(client, {**wrong, "status": "entered-in-error"}).status_code == 201


def _form(tag: str) -> dict[str, Any]:
    return tagged({"resourceType": "Questionnaire", "status": "active",
                   "url": f"https://example.org/Questionnaire/{tag}", "item": [
                       {"linkId": "hours", "text": "Uren per week", "type": "integer", "required": True},
                       {"linkId": "remote", "text": "Thuiswerken?", "type": "choice",
                        "answerOption": [{"valueString": "ja"}, {"valueString": "nee"}]}]}, tag)


def _answer(tag: str, pid: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return tagged({"resourceType": "QuestionnaireResponse", "status": "completed",
                   "questionnaire": f"https://example.org/Questionnaire/{tag}",
                   "subject": {"reference": f"Patient/{pid}"}, "item": items}, tag)


def test_response_to_a_stored_questionnaire(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    assert post(client, _form(tag)).status_code == 201
    good = _answer(tag, pid, [{"linkId": "hours", "answer": [{"valueInteger": 24}]},
                              {"linkId": "remote", "answer": [{"valueString": "ja"}]}])
    assert post(client, good).status_code == 201
    missing = _answer(tag, pid, [{"linkId": "remote", "answer": [{"valueString": "nee"}]}])
    resp = post(client, missing)
    assert resp.status_code == 422 and expressions(resp.json()) == ["QuestionnaireResponse"]
    bad_option = _answer(tag, pid, [{"linkId": "hours", "answer": [{"valueInteger": 24}]},
                                    {"linkId": "remote", "answer": [{"valueString": "soms"}]}])
    resp = post(client, bad_option)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["QuestionnaireResponse.item[1].answer[0]"]


def test_questionnaire_and_response_in_one_transaction(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    wrong = _answer(tag, pid, [{"linkId": "hours", "answer": [{"valueString": "veel"}]}])
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _form(tag), "request": {"method": "POST", "url": "Questionnaire"}},
        {"resource": wrong, "request": {"method": "POST", "url": "QuestionnaireResponse"}}]}
    resp = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert expressions(resp.json()) == ["Bundle.entry[1].resource.item[0].answer[0]"]
    assert client.get("/fhir/Questionnaire", params={"_tag": f"{TAG_SYSTEM}|{tag}"}).json()["total"] == 0


def test_unknown_questionnaire(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    ours = _answer(tag, pid, [])
    ours["questionnaire"] = f"{QUESTIONNAIRE}/no-such-form"
    resp = post(client, ours)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["QuestionnaireResponse.questionnaire"]
    foreign = _answer(tag, pid, [{"linkId": "anything", "answer": [{"valueString": "x"}]}])
    foreign["questionnaire"] = f"https://example.org/unknown/{tag}"
    assert post(client, foreign).status_code == 201
