"""`pgo-work import` (issues 10 and 15): NDJSON through the transaction path.

Good lines load with the same validation, labels and indexes as a transaction; a bad line is
reported with its file, line number and OperationOutcome issues and does not stop the others;
a second run of the same file changes nothing (no new versions); a run killed after some
batches continues after the last committed one."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from service.commands.ndjson_import import Counts, LineError, run_import
from service.config import Settings
from service.runtime import build_runtime

CLI = [sys.executable, "-m", "service.cli"]
PROFILE = "https://pgo-work.nl/fhir/StructureDefinition/contract-hours"
OBS_SYSTEM = "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation"


def _import(settings: Settings, path: Path, batch: int = 500,
            checkpoints: Path | None = None) -> tuple[Counts, list[LineError], str]:
    async def go() -> tuple[Counts, list[LineError], float]:
        rt = build_runtime(settings)
        try:
            return await run_import(rt, [path], batch, checkpoints, show_progress=False,
                                    errors=errors)
        finally:
            await rt.close()

    errors = io.StringIO()
    counts, failures, _ = asyncio.run(go())
    return counts, failures, errors.getvalue()


def _patient(pid: str, tag: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": f"Import-{tag}"}],
            "identifier": [{"system": "urn:test:import", "value": tag}]}


def _hours(oid: str, pid: str, hours: float = 32) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "meta": {"profile": [PROFILE]},
            "status": "final",
            "code": {"coding": [{"system": OBS_SYSTEM, "code": "contract-hours-per-week"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectivePeriod": {"start": "2024-01-01", "end": "2024-12-31"},
            "valueQuantity": {"value": hours, "unit": "h/wk", "system": "http://unitsofmeasure.org",
                              "code": "h/wk"}}


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line)
                                for line in lines) + b"\n")
    return path


def _versions(client: TestClient, ref: str) -> int:
    body = client.get(f"/fhir/{ref}/_history").json()
    return int(body["total"])


def test_good_lines_load_bad_lines_are_reported_and_a_second_run_changes_nothing(
        client: TestClient, settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    pid = f"imp-{tag}"
    no_id = {"resourceType": "Patient", "name": [{"family": f"NoId-{tag}"}]}
    path = _write(tmp_path / "load.ndjson", [
        _patient(pid, tag),                                       # line 1
        _hours(f"{pid}-o1", pid, 32),                             # line 2
        b"{not json",                                             # line 3
        {**_hours(f"{pid}-o2", pid), "status": "bogus"},          # line 4: base binding
        _hours(f"{pid}-o3", pid, 500),                            # line 5: profile invariant
        _hours(f"{pid}-o4", pid, 24),                             # line 6
        no_id,                                                    # line 7: id from content
    ])
    counts, failures, stderr = _import(settings, path, batch=4)
    assert (counts.lines, counts.created, counts.failed) == (7, 4, 3)
    assert sorted(f.line for f in failures) == [3, 4, 5]
    by_line = {f.line: f for f in failures}
    assert by_line[4].issues[0]["expression"] == ["Observation.status"]
    assert "ch-1" in by_line[5].issues[0]["diagnostics"]
    assert f"{path}:5: error [invariant]" in stderr
    # What loaded is what a transaction stores: profile-validated, labelled, indexed.
    found = client.get("/fhir/Observation", params={
        "patient": pid, "code": f"{OBS_SYSTEM}|contract-hours-per-week"}).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == [f"{pid}-o1", f"{pid}-o4"]
    stored = found["entry"][0]["resource"]
    assert stored["meta"].get("security"), "security labels as on any write"
    assert client.get(f"/fhir/Observation/{pid}-o2").status_code == 404
    named = client.get("/fhir/Patient", params={"family": f"NoId-{tag}"}).json()
    assert named["total"] == 1

    again, failures, _ = _import(settings, path, batch=4)
    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, 4, 3)
    for ref in (f"Patient/{pid}", f"Observation/{pid}-o1", f"Observation/{pid}-o4"):
        assert _versions(client, ref) == 1, ref
    assert client.get("/fhir/Patient", params={"family": f"NoId-{tag}"}).json()["total"] == 1

    # A changed line is a new version; the rest stay as they are.
    _write(path, [_patient(pid, tag), _hours(f"{pid}-o1", pid, 36)])
    changed, _, _ = _import(settings, path)
    assert (changed.updated, changed.unchanged) == (1, 1)
    assert _versions(client, f"Observation/{pid}-o1") == 2
    assert client.get(f"/fhir/Observation/{pid}-o1").json()["valueQuantity"]["value"] == 36


def test_a_resource_twice_in_one_file_lands_as_two_versions(
        client: TestClient, settings: Settings, tmp_path: Path) -> None:
    pid = f"imp-{uuid.uuid4().hex[:10]}"
    path = _write(tmp_path / "twice.ndjson", [_patient(pid, "a"), _patient(pid, "b")])
    counts, failures, _ = _import(settings, path)
    assert not failures and (counts.created, counts.updated) == (1, 1)
    assert _versions(client, f"Patient/{pid}") == 2


def test_an_interrupted_import_continues_after_its_last_committed_batch(
        client: TestClient, settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    pid = f"imp-{tag}"
    lines = [_patient(pid, tag)] + [_hours(f"{pid}-{i}", pid, i % 40) for i in range(199)]
    path = _write(tmp_path / "big.ndjson", lines)
    checkpoints = tmp_path / "checkpoints"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGO_WORK_")}
    env.update({"PGO_WORK_DATABASE_URL": settings.database_url,
                "PGO_WORK_BASE_URL": settings.base_url,
                "PGO_WORK_DATA_DIR": str(tmp_path / "data")})
    args = [*CLI, "import", str(path), "--batch", "10", "--no-progress",
            "--checkpoint-dir", str(checkpoints)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("*.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no batch was committed in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # as a crash would: no clean-up
    proc.wait(timeout=30)
    saved = orjson.loads(next(checkpoints.glob("*.json")).read_bytes())
    assert 0 < saved["line"] < len(lines), "killed part-way"

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"continuing after line {saved['line']}" in done.stderr
    assert not list(checkpoints.glob("*.json")), "a finished file keeps no checkpoint"
    found = client.get("/fhir/Observation", params={"patient": pid, "_count": 0}).json()
    assert found["total"] == 199
    for ref in (f"Observation/{pid}-0", f"Observation/{pid}-198", f"Patient/{pid}"):
        assert _versions(client, ref) == 1, ref
