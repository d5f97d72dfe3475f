"""A database outage answers 503 with Retry-After, keeps the client's connection, logs one line
per failure, and the server recovers by itself when the database is back (issue 14).

The server is a real `pgo-work serve` process on a PostgreSQL cluster of the test's own
(initdb/pg_ctl in a temporary folder), which the test stops and starts again.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.config import Settings
from service.store.migrate import upgrade

from .conftest import system_token
from .server_process import PrivatePostgres, Served, private_postgres, serve

BOUND_SECONDS = 10
"""No request may take longer than this while the database is down."""


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def server(private_pg: PrivatePostgres) -> Iterator[tuple[Served, str]]:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{private_pg.port}/postgres")
        try:
            await conn.execute("CREATE DATABASE outage")
        finally:
            await conn.close()

    asyncio.run(create())
    url = private_pg.url.rsplit("/", 1)[0] + "/outage"
    upgrade(url)
    with serve(url, {"PGO_WORK_RETRY_AFTER_SECONDS": "3",
                     "PGO_WORK_DB_CONNECT_TIMEOUT_SECONDS": "3"}) as served:
        token = system_token(Settings(database_url=url, base_url=served.base))
        yield served, token


def _send(conn: http.client.HTTPConnection, token: str, method: str, path: str,
          body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], Any, float]:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    payload = None
    if body is not None:
        headers["Content-Type"] = "application/fhir+json"
        payload = json.dumps(body).encode()
    conn.request(method, f"/fhir/{path}", body=payload, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    parsed = json.loads(data) if data else None
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed, \
        time.monotonic() - started


def test_outage_answers_503_then_recovers(private_pg: PrivatePostgres,
                                          server: tuple[Served, str]) -> None:
    served, token = server
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=BOUND_SECONDS + 5)
    status, _, before, _ = _send(conn, token, "POST", "Patient",
                                 {"resourceType": "Patient", "gender": "female"})
    assert status == 201
    socket_before = conn.sock

    private_pg.stop("fast")
    try:
        lines_before = len(served.log_lines())
        requests = [("GET", f"Patient/{before['id']}"), ("GET", "Patient?gender=female"),
                    ("POST", "Patient"), ("GET", f"Patient/{before['id']}")]
        for method, path in requests:
            body = {"resourceType": "Patient"} if method == "POST" else None
            status, headers, outcome, took = _send(conn, token, method, path, body)
            assert status == 503, (method, path, status, outcome)
            assert headers.get("retry-after") == "3"
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "transient"
            assert took < BOUND_SECONDS
            assert headers.get("connection", "").lower() != "close"
            assert conn.sock is socket_before, "the server closed the keep-alive connection"
        time.sleep(0.3)
        new_lines = served.log_lines()[lines_before:]
        assert len(new_lines) == len(requests), "\n".join(new_lines)
        assert all("503" in line and "database unavailable" in line for line in new_lines), \
            "\n".join(new_lines)
    finally:
        private_pg.start()

    # Back without restarting the server: the pool replaces its dead connections.
    status, _, again, _ = _send(conn, token, "GET", f"Patient/{before['id']}")
    assert status == 200, again
    assert again["id"] == before["id"]
    status, _, _, _ = _send(conn, token, "POST", "Patient", {"resourceType": "Patient"})
    assert status == 201
    assert conn.sock is socket_before
    conn.close()
