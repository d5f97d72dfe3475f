"""Shared steps of the search tests: run a search scoped to one test's data, read the result."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi.testclient import TestClient

from .helpers import TAG_SYSTEM, create, tagged

Params = list[tuple[str, str]]
OBS_SYSTEM = "https://pgo-work.nl/fhir/test-run/observation-code"
"""A code system of our own, so test observations do not fall under the pgo-work profiles."""
LOINC = "http://loinc.org"


def scope(tag: str) -> tuple[str, str]:
    """The `_tag` criterion that limits a search to what one test wrote."""
    return ("_tag", f"{TAG_SYSTEM}|{tag}")


def search(client: TestClient, path: str, tag: str | None, params: Params | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET a search (scoped to `tag` when given), assert it succeeded, return the Bundle."""
    query = list(params or []) + ([scope(tag)] if tag else [])
    resp = client.get(f"/fhir/{path}".rstrip("/"), params=query, headers=headers or {})
    assert resp.status_code == 200, resp.text
    bundle: dict[str, Any] = resp.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """Ids of the entries with search mode `mode`, in Bundle order."""
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def found(client: TestClient, path: str, tag: str, params: Params) -> set[str]:
    """The set of matching ids (one page, large enough for these small tests)."""
    return set(ids(search(client, path, tag, [*params, ("_count", "100")])))


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            url: str = item["url"]
            return url
    return None


def follow(client: TestClient, url: str) -> dict[str, Any]:
    """GET a page link exactly as the server wrote it."""
    parts = urlsplit(url)
    assert parts.path.startswith("/fhir"), url
    resp = client.get(parts.path, params=parse_qsl(parts.query, keep_blank_values=True))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def query_of(url: str) -> Params:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def error(client: TestClient, path: str, params: Params, status: int = 400,
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET a search that must fail with `status` and an OperationOutcome; return the outcome."""
    resp = client.get(f"/fhir/{path}", params=params, headers=headers or {})
    assert resp.status_code == status, resp.text
    outcome: dict[str, Any] = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


def expressions(outcome: dict[str, Any]) -> list[str]:
    return [x for issue in outcome["issue"] for x in issue.get("expression", [])]


def make(client: TestClient, tag: str, resource: dict[str, Any]) -> str:
    """Create a tagged resource and return its id."""
    return str(create(client, tagged(resource, tag))["id"])


def observation(subject: str | None = None, code: str = "contract-hours-per-week",
                system: str = OBS_SYSTEM, **extra: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": system, "code": code}]}, **extra}
    if subject:
        obs["subject"] = {"reference": subject}
    return obs
