"""A `pgo-work serve` process and a private PostgreSQL cluster, for tests of failures that a
server in the test's own process cannot show (its log, its sockets, a database going away)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from .live_server import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    base: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    """The server process (a test may kill it)."""

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@contextmanager
def serve(database_url: str, extra_env: dict[str, str] | None = None,
          args: tuple[str, ...] = ()) -> Iterator[Served]:
    """`pgo-work serve --no-migrate` on a free loopback port; its stderr goes to a file."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "PGO_WORK_DATABASE_URL": database_url, "PGO_WORK_BASE_URL": base,
           **(extra_env or {})}
    folder = Path(tempfile.mkdtemp(prefix="pgo-serve-"))
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--no-migrate", "--port", str(port),
             "--log-level", "warning", "--no-access-log", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"{base}/metadata", proc, 60, log.read_text)
        yield Served(base, port, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl (the newest installed version), or None."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else [])
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary folder, on a free port: a test may stop
    and start it (never the shared server on 5432). Runs as the `postgres` OS user when the
    test runs as root (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="pgo-private-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c max_connections=50")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.folder / "postgres.log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster, initialised and removed afterwards; the test is skipped where
    initdb/pg_ctl are not installed."""
    import pytest

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("initdb/pg_ctl are not installed: no private PostgreSQL to stop")
    pg = PrivatePostgres(bindir)
    try:
        pg.init()
        yield pg
    finally:
        pg.remove()
