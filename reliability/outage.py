"""Database outage: a server on a private PostgreSQL cluster (initdb/pg_ctl in a temporary
folder, never the shared server), steady load, the cluster stopped and started again.

During the outage every answer is 503 with an OperationOutcome and Retry-After, none takes
longer than a bound, none is 500; afterwards the server answers again without a restart and
every write that was answered 2xx is in the database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import httpx

from service.store.migrate import upgrade
from tests.server_process import PrivatePostgres, postgres_bin

from .common import Config, Result, Server, headers, is_outcome, token

BOUND_SECONDS = 10.0
LOADERS = 4


class Load:
    def __init__(self, base: str, tok: str) -> None:
        self.base, self.tok = base, tok
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.phase = "before"
        self.statuses: Counter[tuple[str, str]] = Counter()
        self.bad_503: list[str] = []
        self.acknowledged: list[str] = []
        self.slowest: dict[str, float] = {}
        self.first_ok_after: float | None = None
        self.started_again: float | None = None

    def worker(self) -> None:
        with httpx.Client(base_url=self.base + "/", timeout=BOUND_SECONDS + 5) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                phase = self.phase
                began = time.monotonic()
                try:
                    if n % 2 or not self.acknowledged:
                        resp = client.post("Patient", json={"resourceType": "Patient"},
                                           headers=headers(self.tok, True))
                    else:
                        resp = client.get(f"Patient/{self.acknowledged[-1]}",
                                          headers=headers(self.tok))
                    status = str(resp.status_code)
                except httpx.TimeoutException:
                    status, resp = "timeout", None
                except httpx.HTTPError as exc:
                    status, resp = type(exc).__name__, None
                took = time.monotonic() - began
                with self.lock:
                    self.statuses[(phase, status)] += 1
                    self.slowest[phase] = max(self.slowest.get(phase, 0.0), took)
                    if resp is not None:
                        self._judge(resp, phase)
                if status == "503":
                    time.sleep(0.2)

    def _judge(self, resp: httpx.Response, phase: str) -> None:
        if resp.status_code == 201:
            self.acknowledged.append(resp.json()["id"])
        if resp.status_code == 503 and (not resp.headers.get("retry-after") or
                                        not is_outcome(resp)):
            self.bad_503.append(resp.text[:200])
        if resp.is_success and phase == "after" and self.first_ok_after is None \
                and self.started_again is not None:
            self.first_ok_after = time.monotonic() - self.started_again


def _create_db(pg: PrivatePostgres) -> str:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres")
        try:
            await conn.execute("CREATE DATABASE outage")
        finally:
            await conn.close()

    asyncio.run(create())
    return pg.url.rsplit("/", 1)[0] + "/outage"


def run(cfg: Config) -> list[Result]:
    result = Result("database outage (private PostgreSQL)")
    bindir = postgres_bin()
    if bindir is None:
        result.failures.append("initdb/pg_ctl not installed")
        return [result]
    outage = 3.0 if cfg.quick else 10.0
    pg = PrivatePostgres(bindir)
    try:
        pg.init()
        url = _create_db(pg)
        upgrade(url)
        with Server(url, env={"PGO_WORK_RETRY_AFTER_SECONDS": "2",
                              "PGO_WORK_DB_CONNECT_TIMEOUT_SECONDS": "3"}) as server:
            load = Load(server.base, token(url, server.base))
            threads = [threading.Thread(target=load.worker, daemon=True) for _ in range(LOADERS)]
            for t in threads:
                t.start()
            time.sleep(3)
            load.phase = "during"
            pg.stop("immediate")
            time.sleep(outage)
            pg.start()
            load.started_again = time.monotonic()
            load.phase = "after"
            time.sleep(3 if cfg.quick else 10)
            load.stop.set()
            for t in threads:
                t.join(timeout=BOUND_SECONDS + 10)
            missing = _missing(server.base, load)
            log_lines = len(server.log_text().splitlines())
    finally:
        pg.remove()
    _figures(result, load, outage, missing, log_lines)
    return [result]


def _missing(base: str, load: Load) -> list[str]:
    tok = load.tok
    gone = []
    with httpx.Client(base_url=base + "/", timeout=30) as client:
        for pid in load.acknowledged:
            if client.get(f"Patient/{pid}", headers=headers(tok)).status_code != 200:
                gone.append(pid)
    return gone


def _figures(result: Result, load: Load, outage: float, missing: list[str],
             log_lines: int) -> None:
    by_phase: dict[str, dict[str, int]] = {}
    for (phase, status), n in sorted(load.statuses.items()):
        by_phase.setdefault(phase, {})[status] = n
    result.add("outage seconds", outage)
    for phase in ("before", "during", "after"):
        result.add(f"answers {phase}", by_phase.get(phase, {}))
        result.add(f"slowest answer {phase} (s)", f"{load.slowest.get(phase, 0):.2f}")
    first = load.first_ok_after
    result.add("first 2xx after restart (s)", f"{first:.2f}" if first is not None else "never")
    result.add("writes acknowledged 2xx", len(load.acknowledged))
    result.add("acknowledged writes missing", len(missing))
    result.add("503 without Retry-After/OperationOutcome", len(load.bad_503))
    result.add("server log lines", log_lines)
    during = by_phase.get("during", {})
    errors: dict[str, Any] = {s: n for phase in by_phase.values() for s, n in phase.items()
                              if s == "500" or not s.isdigit()}
    result.check(not errors, f"500s, hangs or dropped connections: {errors}")
    result.check(during.get("503", 0) > 0, "no 503 during the outage")
    result.check(load.slowest.get("during", 0) <= BOUND_SECONDS, "an answer took too long")
    result.check(first is not None, "no recovery without restart")
    result.check(not missing, f"{len(missing)} acknowledged writes missing")
    result.check(not load.bad_503, "a 503 without Retry-After or OperationOutcome")
