"""`pgo-work export`: NDJSON out of the same export code as `$export`, as the operator,
with a progress bar and a summary on stderr, and audited like every read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from service.config import Settings

from .bulk_helpers import count
from .helpers import create, tagged

CLI = [sys.executable, "-m", "service.cli"]


def _export(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGO_WORK_DATABASE_URL": settings.database_url,
           "PGO_WORK_BASE_URL": settings.base_url}
    return subprocess.run([*CLI, "export", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_export_writes_a_file_per_type_and_a_summary(client: TestClient, settings: Settings,
                                                     tag: str, tmp_path: Path) -> None:
    patient = create(client, tagged({"resourceType": "Patient", "name": [{"family": tag}]}, tag))
    out = tmp_path / "out"
    done = _export(settings, str(out), "--type", "Patient", "--type", "Observation")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} <= {"Observation.ndjson", "Patient.ndjson"}
    patients = [orjson.loads(line) for line in (out / "Patient.ndjson").read_text().splitlines()]
    assert len(patients) == count(client, "Patient")
    assert patient["id"] in {p["id"] for p in patients}
    assert "resources of" in done.stderr and "Patient" in done.stderr
    assert "[" in done.stderr and "]" in done.stderr  # the progress bar
    # Audited: the export read this patient's record.
    events = client.get("/fhir/AuditEvent", params={"patient": patient["id"]}).json()
    assert any("pgo-work export" in str(e["resource"]) for e in events.get("entry", []))


def test_export_streams_to_stdout_with_since(client: TestClient, settings: Settings,
                                             tag: str) -> None:
    create(client, tagged({"resourceType": "Patient", "name": [{"family": tag}]}, tag))
    from service.fhir import dates

    since = dates.to_instant(dates.utcnow())
    new = create(client, tagged({"resourceType": "Patient", "name": [{"family": tag}]}, tag))
    done = _export(settings, "--type", "Patient", "--since", since)
    assert done.returncode == 0, done.stderr
    ids = [orjson.loads(line)["id"] for line in done.stdout.splitlines()]
    assert new["id"] in ids and len(ids) == count(client, "Patient", _lastUpdated=f"gt{since}")


def test_export_refuses_an_unknown_type_in_one_line(settings: Settings, tmp_path: Path) -> None:
    done = _export(settings, str(tmp_path / "o"), "--type", "MissingType")
    assert done.returncode == 2
    assert "MissingType" in done.stderr and "Traceback" not in done.stderr
