"""Logs and metrics of a real `pgo-work serve` process, read from its stderr and its /metrics
(issue 15): JSON lines carrying the client's correlation id (access lines and application lines
alike), no query string in any log, text as the default, and metrics summed over `--workers 2`
worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.store.migrate import upgrade
from service.telemetry.exposition import MULTIPROC_ENV
from service.telemetry.multiproc import multiprocess_dir

from .conftest import system_token
from .server_process import PrivatePostgres, Served, private_postgres, serve

JSON_LOGS = ("--log-format", "json", "--log-level", "info", "--access-log")
SECRET = "Geheimzinnig"
"""A family name searched for: it must never reach the log."""


def json_lines(served: Served) -> list[dict[str, Any]]:
    """Every line of the server's stderr, each of which must be one JSON object."""
    out = []
    for line in served.log_lines():
        if not line.strip():
            continue
        record = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message", "process"} <= record.keys(), line
        out.append(record)
    return out


def wait_for(predicate: Any, served: Served, seconds: float = 10) -> list[dict[str, Any]]:
    """The log once `predicate(records)` holds (the log is written by another process)."""
    deadline = time.monotonic() + seconds
    while True:
        records = json_lines(served)
        if predicate(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


def test_json_logs_carry_the_correlation_id_and_no_query(private_pg: PrivatePostgres) -> None:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{private_pg.port}/postgres")
        try:
            await conn.execute("CREATE DATABASE logs")
        finally:
            await conn.close()

    asyncio.run(create())
    url = private_pg.url.rsplit("/", 1)[0] + "/logs"
    upgrade(url)
    with serve(url, {"PGO_WORK_DB_CONNECT_TIMEOUT_SECONDS": "3"}, args=JSON_LOGS) as served:
        token = system_token(Settings(database_url=url, base_url=served.base))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        with httpx.Client(headers=headers, timeout=30) as http:
            found = http.get(f"{served.base}/Patient", params={"family": SECRET},
                             headers={"X-Request-Id": "rid-search-1"})
            assert found.status_code == 200 and found.headers["x-request-id"] == "rid-search-1"
            created = http.post(f"{served.base}/Patient", json={"resourceType": "Patient"},
                                headers={"MedMij-Request-ID": "medmij-7",
                                         "Content-Type": "application/fhir+json"})
            assert created.status_code == 201
            pid = created.json()["id"]
            private_pg.stop("fast")
            try:
                down = http.get(f"{served.base}/Patient/{pid}",
                                headers={"X-Correlation-ID": "rid-outage-9"})
                assert down.status_code == 503
            finally:
                private_pg.start()

        records = wait_for(lambda rs: any(r.get("status") == 503 for r in rs), served)
        text = "\n".join(served.log_lines())
        assert SECRET not in text and "family=" not in text
        assert any("FHIR base" in r["message"] for r in records)

        access = [r for r in records if r["logger"] == "pgo_work.access"]
        search = next(r for r in access if r.get("request_id") == "rid-search-1")
        assert search["method"] == "GET" and search["route"] == "/fhir/Patient"
        assert search["status"] == 200 and search["interaction"] == "search-type"
        assert search["resource_type"] == "Patient" and search["level"] == "INFO"
        assert isinstance(search["duration_ms"], int | float) and search["duration_ms"] >= 0
        assert search["time"].endswith("Z")
        write = next(r for r in access if r.get("request_id") == "medmij-7")
        assert (write["method"], write["status"], write["interaction"]) == ("POST", 201, "create")
        # An application line written while serving a request carries that request's id.
        outage = [r for r in records if r.get("request_id") == "rid-outage-9"]
        warning = next(r for r in outage if r["logger"] == "pgo_work.errors")
        assert warning["level"] == "WARNING" and "database unavailable" in warning["message"]
        assert next(r for r in outage if r["logger"] == "pgo_work.access")["status"] == 503
        # Requests without an id (the start-up probe) get none invented.
        probes = [r for r in access if r["route"] == "/fhir/metadata"]
        assert probes and all("request_id" not in r for r in probes)


def test_text_is_the_default_and_drops_the_query(settings: Settings) -> None:
    with serve(settings.database_url, args=("--log-level", "info", "--access-log")) as served:
        assert httpx.get(f"{served.base}/metadata", params={"family": SECRET},
                         headers={"X-Request-Id": "rid-text"}).status_code == 200
        deadline = time.monotonic() + 10
        while not any("rid-text" in line for line in served.log_lines()):
            assert time.monotonic() < deadline, "\n".join(served.log_lines())
            time.sleep(0.1)
        line = next(line for line in served.log_lines() if "rid-text" in line)
        assert '"GET /fhir/metadata" 200' in line and line.startswith("INFO:")
        assert SECRET not in "\n".join(served.log_lines())
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def _health_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "pgo_work_http_requests_total" and s.labels["interaction"] == "health":
                return s.value
    return 0.0


def test_metrics_add_up_over_worker_processes(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    # A file left by an earlier run (garbage): the server must empty the folder at start, or
    # the first scrape would fail to read it.
    (folder / "counter_424242.db").write_bytes(b"left over from an earlier run")
    with serve(settings.database_url, {"PGO_WORK_METRICS_DIR": str(folder)},
               args=("--workers", "2", *JSON_LOGS)) as served:
        root = served.base.removesuffix("/fhir")

        def probe(_: int) -> int:
            # A connection each, so the kernel can hand them to either worker.
            with httpx.Client(timeout=30) as http:
                return http.get(f"{root}/healthz").status_code

        sent = 0
        pids: set[int] = set()
        for _ in range(10):  # until both workers have answered some (bounded)
            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(probe, range(40))) == {200}
            sent += 40
            records = wait_for(lambda rs, n=sent: sum(r.get("route") == "/healthz" for r in rs) >= n,
                               served)
            pids = {r["process"] for r in records if r.get("route") == "/healthz"}
            if len(pids) >= 2:
                break
        assert len(pids) >= 2, "the requests never reached both worker processes"
        for _ in range(6):
            with httpx.Client(timeout=30) as http:
                scrape = http.get(f"{root}/metrics")
            assert scrape.status_code == 200, scrape.text
            # Every scrape, whichever worker answers it, counts every worker's requests.
            assert _health_count(scrape.text) == sent
        assert any(p.name.startswith(("counter_", "histogram_")) for p in folder.iterdir())
        assert not (folder / "counter_424242.db").exists()


def test_a_temporary_metrics_folder_is_made_for_several_workers_and_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "")  # restored (unset) after the test
    monkeypatch.delenv(MULTIPROC_ENV)
    with multiprocess_dir(1, None) as none:
        assert none is None and MULTIPROC_ENV not in os.environ
    with multiprocess_dir(3, None) as folder:
        assert folder is not None and folder.is_dir()
        assert os.environ[MULTIPROC_ENV] == str(folder)
    assert not folder.exists()
