"""The command line as a new user meets it (issue 15): `serve --port` without a configured base
URL gives links and a token audience on that port, `--base-url` wins, `--version`, account and
client listings, a password change, one clear line when the database cannot be used, and a
test suite that can be pointed at another PostgreSQL database or port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .live_server import free_port, wait_until_up
from .pg_admin import pg_admin_url

CLI = [sys.executable, "-m", "service.cli"]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGO_WORK_")}
    env.update({"PGO_WORK_DATA_DIR": str(tmp / "data"), **extra})
    return env


def run(tmp: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=_env(tmp, **extra), capture_output=True, text=True,
                          input=stdin, timeout=120, cwd=tmp)


@contextmanager
def serving(tmp: Path, *args: str, **extra: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--no-access-log", *args],
                            env=_env(tmp, **extra), cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, 90,
                      lambda: proc.stderr.read() if proc.stderr else "")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_on_another_port_links_on_that_port(tmp_path: Path) -> None:
    with serving(tmp_path) as port:
        base = f"http://127.0.0.1:{port}/fhir"
        token = run(tmp_path, "dev-token", "--scope", "system/*.cruds", "--role", "service",
                    PGO_WORK_PORT=str(port))
        assert token.returncode == 0, token.stderr
        headers = {"Authorization": f"Bearer {token.stdout.strip()}",
                   "Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        with httpx.Client(headers=headers, timeout=30) as http:
            created = http.post(f"{base}/Patient", json={"resourceType": "Patient"})
            assert created.status_code == 201, created.text
            assert created.headers["location"].startswith(f"{base}/Patient/")
            batch = {"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": "Patient?_count=1"}}]}
            # httpx builds `[base]/` for POST [base]: processed, not redirected.
            answer = http.post(f"{base}/", json=batch, follow_redirects=False)
            assert answer.status_code == 200, answer.text
            page = http.get(f"{base}/Patient", params={"_count": "1"}).json()
            assert all(link["url"].startswith(base) for link in page["link"])
            assert page["entry"][0]["fullUrl"].startswith(base)
            smart = http.get(f"{base}/.well-known/smart-configuration").json()
            assert smart["token_endpoint"] == f"http://127.0.0.1:{port}/auth/token"


def test_configured_base_url_wins(tmp_path: Path) -> None:
    public = "https://pgo.example.org/fhir"
    with serving(tmp_path, "--base-url", public) as port:
        meta = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").json()
        assert meta["implementation"]["url"] == public


def test_version_and_help(tmp_path: Path) -> None:
    from service import __version__

    version = run(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"pgo-work {__version__}"
    helped = run(tmp_path, "serve", "--help")
    assert helped.returncode == 0
    for option in ("--host", "--port", "--workers", "--base-url", "default: 8080",
                   "default: 127.0.0.1"):
        assert option in helped.stdout, option


def test_accounts_clients_and_password_change(tmp_path: Path) -> None:
    made = run(tmp_path, "add-account", "jan", "--fhir-user", "Patient/p-jan", "--role", "patient",
               "--password-stdin", stdin="first-password\n")
    assert made.returncode == 0, made.stderr
    assert run(tmp_path, "add-client", "app-1", "--redirect-uri",
               "https://app.example/cb").returncode == 0
    accounts = run(tmp_path, "list-accounts")
    assert accounts.returncode == 0 and "jan  Patient/p-jan  patient" in accounts.stdout
    clients = run(tmp_path, "list-clients")
    assert clients.returncode == 0 and "app-1  public" in clients.stdout
    assert "https://app.example/cb" in clients.stdout
    changed = run(tmp_path, "set-password", "jan", "--password-stdin", stdin="second-password\n")
    assert changed.returncode == 0, changed.stderr
    short = run(tmp_path, "set-password", "jan", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    nobody = run(tmp_path, "set-password", "nobody", "--password-stdin", stdin="long-enough\n")
    assert nobody.returncode == 2 and "no account" in nobody.stderr

    import asyncio

    from service.access.accounts import authenticate
    from service.access.db import transaction
    from service.store.database import create_engine

    async def check(password: str) -> bool:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'pgo-work.sqlite3'}")
        try:
            async with transaction(engine) as conn:
                return await authenticate(conn, "jan", password) is not None
        finally:
            await engine.dispose()

    assert asyncio.run(check("second-password")) and not asyncio.run(check("first-password"))


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:////nonexistent-dir/x/pgo.sqlite3",
                                 "postgresql+asyncpg://postgres:secret@127.0.0.1:1/none"])
def test_unusable_database_is_one_clear_line(tmp_path: Path, url: str) -> None:
    for args in (("migrate",), ("list-accounts",), ("serve", "--port", str(free_port()))):
        result = run(tmp_path, *args, PGO_WORK_DATABASE_URL=url)
        assert result.returncode == 1, result.stderr
        lines = [line for line in result.stderr.splitlines() if not line.startswith("pgo-work ")
                 or "cannot use the database" in line]
        assert len(lines) == 1 and "cannot use the database" in lines[0], result.stderr
        assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_test_database_name_and_port_come_from_the_environment() -> None:
    default = pg_admin_url({})
    assert default == "postgresql://postgres@127.0.0.1:5432/test"
    moved = pg_admin_url({"PGO_WORK_TEST_PG": "postgresql://me:pw@db.example:5432/test",
                          "PGO_WORK_TEST_PG_DATABASE": "ci_admin", "PGO_WORK_TEST_PG_PORT": "6543"})
    assert moved == "postgresql://me:pw@db.example:6543/ci_admin"
