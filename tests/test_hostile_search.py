"""Hostile searches (issue 12, F1-F3 and the 414): every one is answered, with a clear 4xx or
503 OperationOutcome, quickly, and never with a 500, a hang or a reset connection.

- F1: long OR lists (600 comma-separated values) work on SQLite too, GET and POST `_search`,
  and more values than the server takes is a 400 naming the parameter.
- F2: U+0000 in any search input (values, names, chains, `_has`, `_tag`, forms, If-None-Exist,
  conditional update and delete, Bundle entries, any URL) is a 400, on PostgreSQL too.
- F3: more criteria than the server takes is a 400; many ANDs on one parameter are fast; a
  statement over the time limit is cancelled and answered 503 `too-costly`.
- 414: a request target over the limit, up to and beyond what the HTTP parser takes, over real
  HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg
import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from service.store.migrate import upgrade

from .conftest import BASE, FHIR_JSON, bearer, make_database, system_token
from .helpers import TAG_SYSTEM
from .live_server import live_server
from .rest_examples import assert_outcome, example
from .search_helpers import OBS_SYSTEM, found, make, observation, scope

NUL = "\x00"
SYSTEM = "urn:o"
"""A short code system, so 600 codes fit in a URL under the server's 32 KB limit."""


def _codes(n: int, start: int = 0, system: str = SYSTEM) -> str:
    return ",".join(f"{system}|c{i}" for i in range(start, start + n))


def _post_found(client: TestClient, rtype: str, tag: str, params: list[tuple[str, str]]) -> set[str]:
    """The matching ids of a POST `_search` (form parameters, no URL length limit)."""
    form = "&".join(f"{quote(n)}={quote(v)}" for n, v in [*params, scope(tag), ("_count", "100")])
    resp = client.post(f"/fhir/{rtype}/_search", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text
    return {e["resource"]["id"] for e in resp.json().get("entry", [])
            if e["search"]["mode"] == "match"}


# -- F1: long OR lists --------------------------------------------------------------------------

@pytest.fixture
def coded(client: TestClient, tag: str) -> dict[str, str]:
    """Three observations coded c5, c333 and c599 of our own code system, and one Patient."""
    pid = make(client, tag, {"resourceType": "Patient", "name": [{"family": f"Or{tag}"}]})
    out = {"patient": pid}
    for code in ("c5", "c333", "c599"):
        out[code] = make(client, tag, observation(f"Patient/{pid}", code=code, system=SYSTEM,
                                                  effectiveDateTime="2024-03-01"))
    return out


def test_600_ored_codes_match_on_every_database(client: TestClient, tag: str,
                                                coded: dict[str, str]) -> None:
    got = found(client, "Observation", tag, [("code", _codes(600))])
    assert got == {coded["c5"], coded["c333"], coded["c599"]}
    plain = ",".join(f"c{i}" for i in range(600))  # codes without a system
    assert found(client, "Observation", tag, [("code", plain)]) == got
    assert found(client, "Observation", tag, [("code", _codes(300, 300))]) == {
        coded["c333"], coded["c599"]}


def test_600_ored_values_of_other_types_and_shapes(client: TestClient, tag: str,
                                                   coded: dict[str, str]) -> None:
    dates = ",".join(f"eq{1900 + i}" for i in range(600))  # ranges, not equalities
    assert len(found(client, "Observation", tag, [("date", dates)])) == 3
    systems = ",".join(f"urn:s{i}|c5" for i in range(599)) + f",{SYSTEM}|c5"
    assert found(client, "Observation", tag, [("code", systems)]) == {coded["c5"]}
    ids = ",".join([f"nope{i}" for i in range(599)] + [coded["c333"]])
    assert found(client, "Observation", tag, [("_id", ids)]) == {coded["c333"]}
    subjects = ",".join([f"Patient/nope{i}" for i in range(599)] + [f"Patient/{coded['patient']}"])
    assert len(found(client, "Observation", tag, [("subject", subjects)])) == 3
    names = ",".join([f"Zz{i}" for i in range(599)] + [f"Or{tag}"])
    assert len(found(client, "Observation", tag, [("subject:Patient.name", names)])) == 3
    tags = ",".join([f"{TAG_SYSTEM}|nope{i}" for i in range(599)] + [f"{TAG_SYSTEM}|{tag}"])
    assert len(_post_found(client, "Observation", tag, [("_tag", tags)])) == 3
    long_system = _codes(600, system=OBS_SYSTEM) + f",{SYSTEM}|c599"
    assert _post_found(client, "Observation", tag, [("code", long_system)]) == {coded["c599"]}
    has = [("_has:Observation:subject:code", _codes(600))]
    assert found(client, "Patient", tag, has) == {coded["patient"]}


def test_600_ored_codes_by_post_search(client: TestClient, tag: str, coded: dict[str, str]) -> None:
    assert _post_found(client, "Observation", tag, [("code", _codes(600))]) == {
        coded["c5"], coded["c333"], coded["c599"]}
    plain = ",".join(f"c{i}" for i in range(600))
    assert _post_found(client, "Observation", tag, [("code:not", plain)]) == set()


def test_more_values_than_the_limit_is_400_naming_the_parameter(client: TestClient) -> None:
    resp = client.get("/fhir/Observation", params={"code": ",".join(f"c{i}" for i in range(1001))})
    body = assert_outcome(resp, 400, "code")
    assert "1000" in body["issue"][0]["diagnostics"]
    values = ",".join(f"c{i}" for i in range(600))
    resp = client.get("/fhir/Observation", params=[("status", values), ("code", values)])
    assert_outcome(resp, 400, "code")
    form = f"status=final&code={quote(_codes(1001))}"
    resp = client.post("/fhir/Observation/_search", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_outcome(resp, 400, "code")


# -- F2: NUL -----------------------------------------------------------------------------------

NUL_SEARCHES = [
    ("Patient", "name", f"a{NUL}b"),
    ("Patient", "family:exact", f"a{NUL}b"),
    ("Patient", "identifier", f"urn:x|a{NUL}b"),
    ("Observation", "subject:Patient.name", f"a{NUL}b"),
    ("Patient", "_has:Observation:subject:code", f"a{NUL}b"),
    ("Patient", "_tag", f"{TAG_SYSTEM}|a{NUL}b"),
    ("Patient", "_id", f"a{NUL}b"),
    ("Patient", "_profile", f"http://x/{NUL}"),
    ("Observation", "date", f"2024{NUL}"),
    ("Patient", f"na{NUL}me", "x"),
]


@pytest.mark.parametrize(("rtype", "name", "value"), NUL_SEARCHES)
def test_nul_in_a_search_is_400(client: TestClient, rtype: str, name: str, value: str) -> None:
    body = assert_outcome(client.get(f"/fhir/{rtype}", params={name: value}), 400)
    assert "NUL" in body["issue"][0]["diagnostics"]
    form = f"{quote(name)}={quote(value)}"
    resp = client.post(f"/fhir/{rtype}/_search", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_outcome(resp, 400)


def test_nul_is_400_naming_the_parameter(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient", params={"name": f"a{NUL}b"}), 400, "name")
    assert_outcome(client.get("/fhir", params={"_lastUpdated": f"2024{NUL}"}), 400, "_lastUpdated")


def test_nul_in_conditional_writes_is_400(client: TestClient, tag: str) -> None:
    body = orjson.dumps(example("Patient", tag))
    cond = f"identifier={quote(f'urn:x|a{NUL}b')}"
    assert_outcome(client.put(f"/fhir/Patient?{cond}", content=body, headers=FHIR_JSON), 400)
    assert_outcome(client.delete(f"/fhir/Patient?{cond}"), 400)
    assert_outcome(client.post("/fhir/Patient", content=body,
                               headers={**FHIR_JSON, "If-None-Exist": cond}), 400)


def test_nul_in_history_and_other_urls_is_400(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient/_history?_since=2024-01-01T00:00:00Z%00"), 400)
    assert_outcome(client.get("/fhir/Patient/x/_history/1%00"), 400)
    assert_outcome(client.get("/fhir/metadata?mode=%00"), 400)
    assert_outcome(client.get("/fhir/Patient/$everything?x=%00"), 400)


def test_nul_in_bundle_entries_is_400_not_500(client: TestClient, tag: str) -> None:
    for kind in ("batch", "transaction"):
        for request in ({"method": "GET", "url": "Patient?name=a%00b"},
                        {"method": "GET", "url": "Patient?_id=a%00b"},
                        {"method": "DELETE", "url": "Patient?identifier=a%00b"},
                        {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a%00b"}):
            entry: dict[str, Any] = {"request": request}
            if request["method"] == "POST":
                entry["resource"] = example("Patient", tag)
            resp = client.post("/fhir", json={"resourceType": "Bundle", "type": kind,
                                              "entry": [entry]}, headers=FHIR_JSON)
            if kind == "transaction":
                assert_outcome(resp, 400)
            else:
                assert resp.status_code == 200, resp.text
                status = resp.json()["entry"][0]["response"]["status"]
                assert status.startswith("400"), (request, resp.text)


# -- F3: many criteria, slow statements ------------------------------------------------------

def test_more_criteria_than_the_limit_is_400(client: TestClient) -> None:
    params = [("code", f"c{i}") for i in range(51)]
    body = assert_outcome(client.get("/fhir/Observation", params=params), 400, "code")
    assert "50" in body["issue"][0]["diagnostics"]
    form = "&".join(f"code=c{i}" for i in range(51))
    resp = client.post("/fhir/Observation/_search", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_outcome(resp, 400, "code")
    params = [("code:not", f"c{i}") for i in range(25)] + [("subject.name", f"n{i}")
                                                             for i in range(26)]
    assert_outcome(client.get("/fhir/Observation", params=params), 400)


@pytest.fixture(scope="module")
def wide_client(database_url: str) -> Iterator[TestClient]:
    """The app with the criteria cap lifted to 300, to show the query itself stays cheap."""
    settings = Settings(database_url=database_url, base_url=BASE, max_search_criteria=300,
                        max_search_values=5000)
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        c.headers.update({"Accept": "application/fhir+json", **bearer(settings)})
        yield c


def test_many_anded_criteria_on_one_parameter_stay_fast(wide_client: TestClient, tag: str,
                                                        coded: dict[str, str]) -> None:
    """Before: 40 ANDs took 0.8 s on PostgreSQL, 80 took 4.4 s and 500 did not finish. Now
    they answer within the statement time limit (a slower plan would be cancelled and answered
    503, which fails here); how fast is a benchmark's business, not a timed assertion."""
    for n in (50, 300):
        ands = [("code:not", f"{OBS_SYSTEM}|x{i}") for i in range(n // 3)]
        ands += [("code", f"{SYSTEM}|c5,{SYSTEM}|c333,c599," + _codes(17, 1000))
                 for _ in range(n // 3)]
        ands += [("subject.name", f"Or{tag}") for _ in range(n - 2 * (n // 3) - 2)]
        got = _post_found(wide_client, "Observation", tag, ands)
        assert got == {coded["c5"], coded["c333"], coded["c599"]}
        none = _post_found(wide_client, "Observation", tag, [*ands[:-1], ("code", "c5"),
                                                             ("code", "c6")])
        assert none == set()


# -- 414 --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[tuple[str, int, str]]:
    with live_server(settings) as base:
        token = system_token(settings.model_copy(update={"base_url": base}))
        port = urlsplit(base).port
        assert port is not None
        yield base, port, token


def _raw_get(port: int, target: str, token: str) -> tuple[int, dict[str, Any] | None]:
    """Send a GET over a plain socket and read the whole answer (status, parsed JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                     "\r\nAccept: application/fhir+json\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, orjson.loads(payload)
    except orjson.JSONDecodeError:
        return status, None


@pytest.mark.parametrize("size", [40_000, 70_000, 200_000])
def test_a_too_long_url_is_414_with_an_outcome(live: tuple[str, int, str], size: int) -> None:
    _, port, token = live
    status, body = _raw_get(port, "/fhir/Patient?name=" + "a" * size, token)
    assert status == 414
    assert body is not None and body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "too-long"


def test_a_url_just_under_the_limit_is_answered(live: tuple[str, int, str]) -> None:
    _, port, token = live
    target = "/fhir/Patient?_count=1&name=" + "a" * 30_000
    status, body = _raw_get(port, target + "a" * (32768 - len(target)), token)
    assert status == 200 and body is not None and body["resourceType"] == "Bundle"
    status, body = _raw_get(port, target + "a" * (32769 - len(target)), token)
    assert status == 414


def test_nul_in_an_oauth_form_is_400(anon: TestClient) -> None:
    for form in ("grant_type=refresh_token&refresh_token=r&client_id=a%00b",
                 "grant_type=authorization_code&code=a%00b&client_id=pgo-demo-app"
                 "&redirect_uri=http://x&code_verifier=v"):
        resp = anon.post("/auth/token", content=form,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "invalid_request", resp.text


# -- a client that leaves: its statement is cancelled ------------------------------------------

BULK_NAMES = 300_000


@pytest.fixture(scope="module")
def bulky(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own (of the session's kind) with one Patient carrying 300,000 indexed
    names, so that a substring search takes many seconds."""
    kind = "postgres" if database_url.startswith("postgresql") else "sqlite"
    url, drop = make_database(kind, tmp_path_factory.mktemp("bulky"))
    upgrade(url)
    with TestClient(create_app(Settings(database_url=url, base_url=BASE))):
        pass  # publishes the profiles package, unhurried
    if kind == "postgres":
        asyncio.run(_load_postgres(url))
    else:
        _load_sqlite(url.removeprefix("sqlite+aiosqlite:///"))
    yield url
    drop()


_PATIENT = ("INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
            "VALUES ('Patient', 'bulk', 1, {now}, false, "
            "'{{\"resourceType\":\"Patient\",\"id\":\"bulk\"}}') RETURNING pk")


async def _load_postgres(url: str) -> None:
    conn = await asyncpg.connect(_plain(url))
    try:
        pk = await conn.fetchval(_PATIENT.format(now="now()"))
        await conn.execute(
            "INSERT INTO idx_string (resource_pk, param, value_norm, value_exact) "
            "SELECT $1, 'Patient.name', md5(g::text), md5(g::text) "
            "FROM generate_series(1, $2::int) AS g", pk, BULK_NAMES)
    finally:
        await conn.close()


def _load_sqlite(path: str) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        pk = conn.execute(_PATIENT.format(now="'2024-01-01 00:00:00.000000'")).fetchone()[0]
        conn.execute(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
            "INSERT INTO idx_string (resource_pk, param, value_norm, value_exact) "
            "SELECT ?, 'Patient.name', lower(hex(randomblob(16))), 'x' FROM g", (BULK_NAMES, pk))


def test_a_statement_over_the_time_limit_is_503_too_costly(bulky: str) -> None:
    settings = Settings(database_url=bulky, base_url=BASE, statement_timeout_ms=300)
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        c.headers.update({"Accept": "application/fhir+json", **bearer(settings)})
        assert c.get("/fhir/Patient/bulk").status_code == 200
        form = "name:contains=" + ",".join(f"q{i}z" for i in range(1000))
        start = time.monotonic()
        resp = c.post("/fhir/Patient/_search", content=form,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = assert_outcome(resp, 503)
        assert body["issue"][0]["code"] == "too-costly", body
        assert time.monotonic() - start < 10
        assert c.get("/fhir/Patient/bulk").status_code == 200  # the connection is fine after


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _running(url: str) -> int:
    """Statements of other sessions on this database now running a substring match."""
    conn = await asyncpg.connect(_plain(url))
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%LIKE%'"))
    finally:
        await conn.close()


def _wait_for(url: str, want_running: bool, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if (asyncio.run(_running(url)) > 0) == want_running:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"statement {'never started' if want_running else 'still running'}")


def test_a_client_that_leaves_has_its_statement_cancelled(bulky: str) -> None:
    """PostgreSQL: asyncpg cancels the statement. (An SQLite statement runs in a thread that a
    cancelled request does not stop; the statement time limit bounds it there.)"""
    if not bulky.startswith("postgresql"):
        pytest.skip("SQLite statements are bounded by the time limit only")
    settings = Settings(database_url=bulky, statement_timeout_ms=120_000)
    with live_server(settings) as base:
        token = system_token(settings.model_copy(update={"base_url": base}))
        port = urlsplit(base).port
        assert port is not None
        form = ("name:contains=" + ",".join(f"q{i}z" for i in range(1000))).encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"POST /fhir/Patient/_search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form)
        _wait_for(bulky, True, 30)
        time.sleep(1.5)
        assert asyncio.run(_running(bulky)) > 0  # a long statement, still at work
        sock.close()
        assert _wait_for(bulky, False, 20) < 5
        # the server is fine afterwards
        status, body = _raw_get(port, "/fhir/Patient?_id=bulk&_summary=count", token)
        assert status == 200 and body is not None and body["total"] == 1
