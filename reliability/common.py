"""Shared machinery: server processes that can be SIGKILLed and restarted, databases of the
suite's own, tokens, and the figures table every scenario prints."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.access.issuer import mint_dev_token
from service.config import Settings
from service.store.migrate import upgrade
from tests.live_server import free_port, wait_until_up
from tests.pg_admin import new_pg_database

ROOT = Path(__file__).resolve().parent.parent
FHIR_JSON = "application/fhir+json"


@dataclass
class Config:
    quick: bool
    soak_seconds: float
    crash_rounds: int
    fuzz_cases: int

    @classmethod
    def make(cls, quick: bool, soak_seconds: float | None, crash_rounds: int | None,
             fuzz_cases: int | None) -> Config:
        return cls(quick, soak_seconds or (20 if quick else 300),
                   crash_rounds or (5 if quick else 100), fuzz_cases or (3000 if quick else 10000))


@dataclass
class Result:
    """One scenario's figures (rows of name, value) and its verdict."""
    name: str
    rows: list[tuple[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, value: Any) -> None:
        self.rows.append((label, value))

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> str:
        width = max([len(label) for label, _ in self.rows] + [10])
        lines = [f"### {self.name}: {'PASS' if self.passed else 'FAIL'}", "",
                 f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {label.ljust(width)} | {value} |" for label, value in self.rows]
        lines += [f"\nFAILED: {f}" for f in self.failures]
        return "\n".join(lines) + "\n"


# -- databases --------------------------------------------------------------------------------
@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, migrated database of the suite's own: a SQLite file, or a database on the shared
    PostgreSQL server (dropped afterwards; the outage scenario uses a private cluster)."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="pgo-rel-"))
        url = f"sqlite+aiosqlite:///{folder / 'rel.sqlite3'}"
        upgrade(url)
        try:
            yield url
        finally:
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
        return
    url, drop = new_pg_database("pgo_rel")
    try:
        upgrade(url)
        yield url
    finally:
        drop()


async def _scalar(url: str, sql: str) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql))).scalar() or 0)
    finally:
        await engine.dispose()


def count_rows(url: str, resource_type: str) -> int:
    """Current (not deleted) resources of a type, counted in the database itself: the verdict
    must not depend on the server under test."""
    return asyncio.run(_scalar(
        url, f"SELECT count(*) FROM resource WHERE resource_type = '{resource_type}' "
             "AND NOT deleted"))


def token(url: str, base: str) -> str:
    """A system token minted with the database's own key, as `pgo-work dev-token` does."""
    return asyncio.run(mint_dev_token(Settings(database_url=url, base_url=base),
                                      scope="system/*.cruds", role="service",
                                      minutes=24 * 60, client_id="pgo-work-reliability"))


# -- servers ----------------------------------------------------------------------------------
class Server:
    """`pgo-work serve --no-migrate` on a fixed loopback port: start, SIGKILL, start again."""

    def __init__(self, url: str, workers: int = 1, env: dict[str, str] | None = None,
                 public_base: str | None = None) -> None:
        self.url = url
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        # Instances behind one load balancer share the public base URL (the tokens' audience).
        self.public_base = public_base or self.base
        self.env = {**os.environ, "PGO_WORK_DATABASE_URL": url,
                    "PGO_WORK_BASE_URL": self.public_base,
                    **(env or {})}
        self.folder = Path(tempfile.mkdtemp(prefix="pgo-rel-serve-"))
        self.log = self.folder / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--no-migrate", "--port",
                 str(self.port), "--workers", str(self.workers), "--log-level", "warning",
                 "--no-access-log"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_until_up(f"{self.base}/metadata", self.proc, timeout, self.log_tail)

    def kill(self) -> None:
        """SIGKILL the server and its workers (its own process group): no cleanup runs."""
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass
        self.proc = None

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the workers (children) with several, else the
        server process itself."""
        if self.proc is None:
            return []
        children: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children += [int(c) for c in text]
        workers = [c for c in children if "spawn_main" in _cmdline(c)]
        return workers if self.workers > 1 and workers else [self.proc.pid]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def headers(tok: str, write: bool = False) -> dict[str, str]:
    out = {"Authorization": f"Bearer {tok}", "Accept": FHIR_JSON}
    if write:
        out["Content-Type"] = FHIR_JSON
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def is_outcome(resp: httpx.Response) -> bool:
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("resourceType") == "OperationOutcome"
