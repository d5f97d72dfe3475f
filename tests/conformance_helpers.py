"""The conformance examples under tests/data/examples, made ready to send in one test.

Each folder is named after a profile or a Questionnaire id and holds valid-*.json,
invalid-*.json (each with invalid-*.expect.json: the `expression` the server must report) and,
for questionnaires, response-sample.json. Examples refer to `Patient/example`; a test replaces
that with a patient of its own and tags everything, so it sees only its own data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from .helpers import FHIR_JSON, create, patient, tagged

EXAMPLES = Path(__file__).parent / "data" / "examples"
BASE = "https://pgo-work.nl/fhir"
PROFILE = f"{BASE}/StructureDefinition"
QUESTIONNAIRE = f"{BASE}/Questionnaire"
LABELS = f"{BASE}/CodeSystem/data-category"
OBS = f"{BASE}/CodeSystem/pgo-work-observation"


def folders() -> list[str]:
    return sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


def profile_folders() -> list[str]:
    return [f for f in folders() if (Path(__file__).parents[1] / "profiles" / "work" /
                                     f"StructureDefinition-{f}.json").exists()]


def questionnaire_folders() -> list[str]:
    return [f for f in folders() if (Path(__file__).parents[1] / "profiles" / "work" /
                                     f"Questionnaire-{f}.json").exists()]


def example_files(kind: str, which: list[str]) -> list[tuple[str, str]]:
    """(folder, file name) of every `kind`-*.json example (not the .expect.json files)."""
    return [(folder, p.name) for folder in which
            for p in sorted((EXAMPLES / folder).glob(f"{kind}-*.json"))
            if not p.name.endswith(".expect.json")]


def raw(folder: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((EXAMPLES / folder / name).read_bytes())
    return data


def expected_expression(folder: str, name: str) -> str:
    return str(raw(folder, name.replace(".json", ".expect.json"))["expression"])


def example(folder: str, name: str, tag: str, patient_id: str) -> dict[str, Any]:
    """The example, about `patient_id`, tagged with `tag`, without its id (so it can be POSTed)."""
    text = (EXAMPLES / folder / name).read_text().replace('"Patient/example"',
                                                         f'"Patient/{patient_id}"')
    resource: dict[str, Any] = orjson.loads(text)
    resource.pop("id", None)
    return tagged(resource, tag)


def new_patient(client: TestClient, tag: str) -> str:
    return str(create(client, patient(tag))["id"])


def post(client: TestClient, resource: dict[str, Any]) -> Any:
    return client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)


def expressions(outcome: dict[str, Any]) -> list[str]:
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return [x for issue in outcome["issue"] for x in issue.get("expression", [])]


def labels(resource: dict[str, Any]) -> set[str]:
    return {s["code"] for s in resource.get("meta", {}).get("security", []) if s.get("system") == LABELS}
