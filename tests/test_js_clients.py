"""Real JavaScript clients, unmodified, against a live server (issue 15, "what real clients trip
over"): fhir-kit-client 2.0.3 (read, search with paging, create, update, a transaction) and the
SMART JS client fhirclient 2.6.3 (standalone launch with PKCE through the login page, the
code exchange of a public client, `refresh()` as the library sends it, and a client from a
bearer token). Node runs the scripts in tests/js/; the pinned packages are installed there with
`npm ci` (tests/js/node_modules is not committed). Without node or npm these tests fail, never
skip: CI has both (docs/js-clients.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import PASSWORD, REDIRECT, account, public_client
from .conftest import system_token
from .helpers import create, patient
from .live_server import live_server

JS = Path(__file__).resolve().parent / "js"
INSTALLED_MARK = JS / "node_modules" / ".installed-lock-sha256"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: the JavaScript client tests need Node 20 and npm")
    return path


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with tests/js/package-lock.json installed (again only when the lock changed)."""
    node = _tool("node")
    lock = hashlib.sha256((JS / "package-lock.json").read_bytes()).hexdigest()
    if not INSTALLED_MARK.exists() or INSTALLED_MARK.read_text() != lock:
        done = subprocess.run([_tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=JS, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        INSTALLED_MARK.write_text(lock)
    return node


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as base:
        yield base


def run_js(node: str, script: str, **env: str) -> dict[str, Any]:
    done = subprocess.run([node, script], cwd=JS, capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env})
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}\n{done.stdout}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_fhir_kit_client(node: str, base_url: str, settings: Settings, tag: str) -> None:
    token = system_token(settings.model_copy(update={"base_url": base_url}))
    seen = run_js(node, "fhir_kit_client.mjs", FHIR_BASE=base_url, TOKEN=token, TAG=tag)
    assert seen["fhirVersion"] == "4.0.1"
    assert seen["createdVersion"] == "1" and seen["readFamily"] == "Smit"
    assert seen["updatedVersion"] == "2"
    assert seen["transactionType"] == "transaction-response"
    assert all(s.startswith("201") for s in seen["transactionStatuses"])
    assert len(seen["transactionStatuses"]) == 4
    # Five tagged Patients, two a page: three pages through the server's `next` links.
    assert seen["total"] == 5 and seen["pages"] == 3
    assert len(seen["searchedIds"]) == 5 == len(set(seen["searchedIds"]))
    assert seen["createdId"] in seen["searchedIds"]
    assert sorted(seen["historyVersions"]) == ["1", "2"]


def test_smart_js_client_launch_refresh_and_bearer(node: str, base_url: str, client: TestClient,
                                                   settings: Settings, tag: str) -> None:
    anna = create(client, patient(tag))["id"]
    live = settings.model_copy(update={"base_url": base_url})
    app_id = public_client(live)
    username = account(live, f"Patient/{anna}", "patient")
    seen = run_js(node, "smart_client.cjs", FHIR_BASE=base_url, CLIENT_ID=app_id,
                  REDIRECT_URI=REDIRECT, USERNAME=username, PASSWORD=PASSWORD,
                  SCOPE="launch/patient offline_access patient/*.rs",
                  TOKEN=system_token(live))
    assert seen["codeChallengeMethod"] == "S256"
    assert seen["loginPage"] == 200 and seen["signInStatus"] == 303
    assert seen["patientInContext"] == anna and seen["patientRead"] == anna
    # refresh() sends only grant_type and refresh_token (no client_id): the token names its client.
    assert seen["refreshed"] and seen["newRefreshToken"]
    assert seen["readAfterRefresh"] == anna
    assert seen["bearerSearch"] == [anna]
