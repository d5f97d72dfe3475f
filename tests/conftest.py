"""Test fixtures: the real app over HTTP (ASGI) on a real, freshly migrated database.

Every test that takes `client` runs once per database in PGO_WORK_TEST_DATABASES
(default "sqlite,postgres"): SQLite in a temporary file, PostgreSQL in a database created for
the session on PGO_WORK_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test; its database
and port can also be set alone with PGO_WORK_TEST_PG_DATABASE and PGO_WORK_TEST_PG_PORT) and
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.access.issuer import mint_dev_token
from service.config import Settings
from service.main import create_app
from service.store.migrate import upgrade

from .consent_world import Actors, Record, build_actors, build_record
from .pg_admin import new_pg_database

DATABASES = [d.strip() for d in os.environ.get("PGO_WORK_TEST_DATABASES", "sqlite,postgres").split(",")
             if d.strip()]
BASE = "http://testserver/fhir"


def make_database(kind: str, tmp: Path) -> tuple[str, callable]:  # type: ignore[valid-type]
    """A fresh empty database URL and a function that removes it."""
    if kind == "sqlite":
        path = tmp / f"{uuid.uuid4().hex}.sqlite3"
        return f"sqlite+aiosqlite:///{path}", lambda: path.unlink(missing_ok=True)
    if kind == "postgres":
        return new_pg_database("pgo_test")
    raise ValueError(f"unknown test database kind {kind!r}")


@pytest.fixture(scope="session", params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, drop = make_database(request.param, tmp_path_factory.mktemp(request.param))
    upgrade(url)
    yield url
    drop()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, base_url=BASE, default_page_size=20, max_page_size=200)


def system_token(settings: Settings, minutes: int = 24 * 60) -> str:
    """A `system/*.cruds` access token from the built-in issuer, minted through the same code
    path as `pgo-work dev-token`, with the database key of `settings`' database: the server
    accepts it exactly as it would in production; there is no test-only way in."""
    return asyncio.run(mint_dev_token(settings, scope="system/*.cruds", role="service",
                                      minutes=minutes, client_id="pgo-work-tests"))


def bearer(settings: Settings) -> dict[str, str]:
    """Authorization header with a system token for an app running with `settings`."""
    return {"Authorization": f"Bearer {system_token(settings)}"}


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as c:
        c.headers.update({"Accept": "application/fhir+json", **bearer(settings)})
        yield c


@pytest.fixture(scope="session")
def anon(settings: Settings) -> Iterator[TestClient]:
    """The app with no credentials of its own: each request brings the token it tests."""
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        c.headers.update({"Accept": "application/fhir+json"})
        yield c


@pytest.fixture
def tag() -> str:
    """A unique token per test, to scope searches to the data that test wrote."""
    return uuid.uuid4().hex[:16]


def _module_name(request: pytest.FixtureRequest) -> str:
    return request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")


@pytest.fixture(scope="module")
def actors(client: TestClient, anon: TestClient, settings: Settings,
           request: pytest.FixtureRequest) -> Actors:
    """One caller per professional role with a real token, shared by the tests of a module
    (`consent_world`)."""
    return build_actors(client, anon, settings, f"{_module_name(request)}-actors")


@pytest.fixture
def record(client: TestClient, tag: str, request: pytest.FixtureRequest) -> Record:
    """A new patient with one resource per data category, tagged with the test's tag."""
    family = _module_name(request).title().replace("_", "")
    return build_record(client, tag, f"{family}{tag}")


FHIR_JSON = {"Content-Type": "application/fhir+json"}
