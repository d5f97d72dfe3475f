"""A server process killed with SIGKILL in the middle of load loses no audit record of a read
it answered and no write it acknowledged.

The audit of a read commits in the read's transaction before the response is sent; on
PostgreSQL that commit is asynchronous (`Runtime.store`, `ASYNC_AUDIT_COMMIT`), which only a
crash of the DATABASE can cut short, never the server process: the commit is complete inside
PostgreSQL once COMMIT returns. This test kills the server process (all of it, at once) while
reads and creates are in flight and then looks for every answered read's AuditEvent and every
acknowledged create.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from service.config import Settings

from .conftest import system_token
from .helpers import contract_hours, create, patient
from .live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
FHIR = "application/fhir+json"


def _start(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`pgo-work serve --workers 2` in its own process group; with the test app's base URL, so
    that it accepts the same tokens (issuer and audience)."""
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "PGO_WORK_DATABASE_URL": settings.resolved_database_url(),
           "PGO_WORK_BASE_URL": settings.base_url}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--no-migrate", "--no-worker",
             "--port", str(port), "--workers", "2", "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pgo-work serve did not start:\n{log.read_text()}")
        time.sleep(0.2)


def test_sigkill_loses_no_audit_of_an_answered_read_and_no_acknowledged_write(
        client: TestClient, settings: Settings, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    ids = [create(client, contract_hours(tag, pid, 20 + i % 10, "2024-01-01"))["id"]
           for i in range(120)]
    token = system_token(settings, minutes=30)
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    folder = Path(tempfile.mkdtemp(prefix="pgo-crash-"))
    proc = _start(settings, port, folder / "server.log")
    headers = {"Accept": FHIR, "Authorization": f"Bearer {token}"}
    answered: list[str] = []  # Observations whose read was answered 200
    written: list[str] = []  # Observations whose create was answered 201
    lock = threading.Lock()
    killed = threading.Event()

    def work(i: int) -> None:
        if killed.is_set():
            return
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
                if i % 3 == 2:
                    resp = http.post("/Observation", json=contract_hours(tag, pid, 8, "2024-02-01"),
                                     headers={"Content-Type": FHIR})
                    if resp.status_code == 201:
                        with lock:
                            written.append(resp.json()["id"])
                else:
                    oid = ids[i % len(ids)]
                    if http.get(f"/Observation/{oid}").status_code == 200:
                        with lock:
                            answered.append(oid)
        except httpx.HTTPError:
            pass  # in flight when the server died: no response, nothing promised

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(work, i) for i in range(len(ids) * 3 // 2)]
            while len(answered) + len(written) < 60 and not all(f.done() for f in futures):
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)  # the whole server, mid-load, no shutdown
            killed.set()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    assert len(answered) >= 20 and written, (len(answered), len(written))
    for oid in set(answered):
        reads = client.get("/fhir/AuditEvent", params={
            "entity": f"Observation/{oid}", "action": "R", "_summary": "count"}).json()
        assert reads["total"] >= answered.count(oid), f"an answered read of {oid} has no AuditEvent"
    for oid in written:
        assert client.get(f"/fhir/Observation/{oid}").status_code == 200, f"create {oid} lost"
