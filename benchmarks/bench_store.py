"""In-process benchmark of the FHIR store, next to the same work done as raw SQL.

    python -m benchmarks.bench_store --db sqlite|postgres|both --patients 1000 --obs 100

On a fresh database of each kind (migrated with Alembic like production) it loads N patients
with M Observations each through 100-entry transaction Bundles (service.rest.bundle, no HTTP),
then measures single creates, read, vread and three searches through the REST-level handlers,
and after each figure the hand-written SQL equivalent through the bare driver on the same
database, plus the ratio ours/raw. Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from service.config import Settings
from service.fhir import dates
from service.rest.bundle import BundleProcessor
from service.rest.interactions import Interactions
from service.rest.messages import FhirRequest
from service.runtime import Runtime, build_runtime
from service.store.access import SystemAccess
from service.store.migrate import upgrade

from . import raw as sql
from .common import (
    CONTRACT_HOURS,
    OBS_SYSTEM,
    PG_ADMIN_DEFAULT,
    Database,
    entry_stream,
    file_size,
    make_database,
    observation,
    summary,
    transaction_bundles,
)
from .raw import RawDb

BASE = "http://127.0.0.1:8080/fhir"
DATE_FROM = "2022-01-01"
PAGE = 20
SORT_PAGE = 50
MIN_SAMPLES = 5


@dataclass
class Row:
    """One line of the report: a figure of ours and of raw SQL, and what the ratio means."""

    name: str
    unit: str
    ours: float
    raw: float

    @property
    def ratio(self) -> float:
        return self.ours / self.raw if self.raw else float("nan")


@dataclass
class Report:
    kind: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_latency(self, name: str, ours: list[float], raw: list[float]) -> None:
        o, r = summary(ours), summary(raw)
        for q in ("p50", "p95", "p99"):
            self.rows.append(Row(f"{name} {q}", "ms", o[q], r[q]))

    def add_rate(self, name: str, ours: float, raw: float) -> None:
        self.rows.append(Row(name, "/s", ours, raw))

    def print(self) -> None:
        print(f"\n== {self.kind} ==")
        print(f"{'figure':<52}{'unit':>6}{'ours':>12}{'raw SQL':>12}{'ours/raw':>10}")
        for row in self.rows:
            print(f"{row.name:<52}{row.unit:>6}{row.ours:>12.2f}{row.raw:>12.2f}{row.ratio:>10.2f}")
        for note in self.notes:
            print(f"  note: {note}")

    def as_json(self) -> dict[str, Any]:
        return {"db": self.kind, "notes": self.notes,
                "rows": [{"name": r.name, "unit": r.unit, "ours": r.ours, "raw": r.raw,
                          "ratio": r.ratio} for r in self.rows]}


class Bench:
    """One database's run: our FHIR layer and the raw driver side by side."""

    def __init__(self, db: Database, rt: Runtime, raw: RawDb, args: argparse.Namespace) -> None:
        self.db = db
        self.rt = rt
        self.raw = raw
        self.args = args
        self.rng = random.Random(args.seed)
        self.ix = Interactions(rt)
        self.access = SystemAccess()
        self.report = Report(db.kind)
        self.patients: list[str] = []
        self.observations: list[str] = []

    # -- ingest ----------------------------------------------------------------------------
    async def load(self) -> None:
        """The bulk load itself: 100-entry transaction Bundles; raw inserts the same rows."""
        processor = BundleProcessor(self.rt)
        known: dict[int, str] = {}
        ours_time = raw_time = 0.0
        count = 0
        started = time.perf_counter()
        bundles = transaction_bundles(self.rng, self.args.patients, self.args.obs,
                                      self.args.bundle_size, known)
        for i, (bundle, chunk) in enumerate(bundles):
            t0 = time.perf_counter()
            result = await processor.process(bundle, self.access, None)
            ours_time += time.perf_counter() - t0
            rows = []
            for entry, source in zip(result["entry"], chunk, strict=True):
                rtype, rid = entry["response"]["location"].split("/")[:2]
                if source.is_patient:
                    known[source.patient_index] = f"Patient/{rid}"
                    self.patients.append(rid)
                else:
                    self.observations.append(rid)
                rows.append((rtype, rid, 1, self.raw.when(dates.utcnow()),
                             orjson.dumps(entry["resource"]).decode()))
            t0 = time.perf_counter()
            await self.raw.write(sql.INSERT_RAW, rows)
            raw_time += time.perf_counter() - t0
            count += len(rows)
            if self.args.progress and (i + 1) % 100 == 0:
                elapsed = time.perf_counter() - started
                print(f"  [{self.db.kind}] loaded {count} resources in {elapsed:.0f} s "
                      f"({count / ours_time:.0f}/s ours)", file=sys.stderr, flush=True)
        self.report.add_rate(f"ingest: {self.args.bundle_size}-entry transactions, resources",
                             count / ours_time, count / raw_time)
        self.report.notes.append(
            f"loaded {len(self.patients)} Patients + {len(self.observations)} Observations "
            f"in {ours_time:.1f} s (ours) vs {raw_time:.1f} s (raw insert of the same JSON rows)")

    async def load_by_import(self) -> None:
        """The same data through the bulk loader (`pgo-work import`'s code path): NDJSON lines
        with ids, `--bundle-size` lines per transaction of PUTs; raw inserts the same rows."""
        from service.commands.ndjson_import import Importer, parse_line

        importer = Importer(self.rt, self.args.bundle_size)
        ours_time = raw_time = 0.0
        count = 0
        started = time.perf_counter()
        batch: list[Any] = []

        async def send() -> None:
            nonlocal ours_time, raw_time, count
            t0 = time.perf_counter()
            counts = await importer.send("bench.ndjson", batch)
            ours_time += time.perf_counter() - t0
            assert counts.failed == 0, importer.failures[:1]
            rows = [(line.resource["resourceType"], line.resource["id"], 1,
                     self.raw.when(dates.utcnow()), orjson.dumps(line.resource).decode())
                    for line in batch]
            t0 = time.perf_counter()
            await self.raw.write(sql.INSERT_RAW, rows)
            raw_time += time.perf_counter() - t0
            count += len(rows)
            batch.clear()
            if self.args.progress and (count // len(rows)) % 100 == 0:
                print(f"  [{self.db.kind}] imported {count} resources in "
                      f"{time.perf_counter() - started:.0f} s ({count / ours_time:.0f}/s ours)",
                      file=sys.stderr, flush=True)

        pid = ""
        stream = entry_stream(self.rng, self.args.patients, self.args.obs)
        for number, entry in enumerate(stream, start=1):
            entry.resource["id"] = str(uuid.uuid4())
            if entry.is_patient:
                pid = entry.resource["id"]
                self.patients.append(pid)
            else:
                entry.resource["subject"] = {"reference": f"Patient/{pid}"}
                self.observations.append(entry.resource["id"])
            line = parse_line(orjson.dumps(entry.resource), "bench.ndjson", number)
            batch.append(line)
            if len(batch) >= self.args.bundle_size:
                await send()
        if batch:
            await send()
        self.report.add_rate(f"import: {self.args.bundle_size}-line batches (bulk loader), "
                             "resources", count / ours_time, count / raw_time)
        self.report.notes.append(
            f"imported {len(self.patients)} Patients + {len(self.observations)} Observations "
            f"in {ours_time:.1f} s (ours) vs {raw_time:.1f} s (raw insert of the same JSON rows)")

    async def single_creates(self) -> None:
        """Single creates, one transaction each, as a POST would do (validation included)."""
        n = self.args.single
        ours: list[float] = []
        raw: list[float] = []
        for _ in range(n):
            subject = f"Patient/{self.rng.choice(self.patients)}"
            body = observation(self.rng, subject)
            t0 = time.perf_counter()
            async with self.rt.store(self.access, write=True) as store:
                resp = await self.ix.create(store, FhirRequest("POST", "Observation", body=body))
            ours.append(time.perf_counter() - t0)
            assert resp.status == 201 and resp.raw is not None
            row = ("Observation", str(uuid.uuid4()), 1, self.raw.when(dates.utcnow()), resp.raw)
            t0 = time.perf_counter()
            await self.raw.write(sql.INSERT_RAW, [row])
            raw.append(time.perf_counter() - t0)
        self.report.add_rate("create: single, one transaction each",
                             summary(ours)["rate"], summary(raw)["rate"])
        self.report.add_latency("create: single", ours, raw)

    # -- reads -----------------------------------------------------------------------------
    async def reads(self) -> None:
        ids = [self.rng.choice(self.observations) for _ in range(self.args.reads)]

        async def ours_read(rid: str) -> None:
            async with self.rt.store(self.access) as store:
                await store.read("Observation", rid)

        async def raw_read(rid: str) -> None:
            rows = await self.raw.fetch(sql.READ, "Observation", rid)
            assert rows

        async def ours_vread(rid: str) -> None:
            async with self.rt.store(self.access) as store:
                await store.vread("Observation", rid, "1")

        async def raw_vread(rid: str) -> None:
            rows = await self.raw.fetch(sql.VREAD, 1, "Observation", rid)
            assert rows

        for name, ours_fn, raw_fn in (("read", ours_read, raw_read),
                                      ("vread", ours_vread, raw_vread)):
            ours = await _timed(ours_fn, ids, self.args.budget)
            if len(ours) < len(ids):
                self._budget_note(name, len(ours), len(ids))
            raw = await _timed(raw_fn, ids[: len(ours)], self.args.budget * 10)
            self.report.add_rate(f"{name}: sequential throughput", summary(ours)["rate"],
                                 summary(raw)["rate"])
            self.report.add_latency(f"{name}:", ours, raw)

    # -- searches --------------------------------------------------------------------------
    async def search(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        async with self.rt.store(self.access) as store:
            resp = await self.ix.search(store, FhirRequest("GET", "Observation", query=query))
        assert resp.body is not None
        return resp.body

    async def searches(self) -> None:
        targets = [self.rng.choice(self.patients) for _ in range(self.args.searches)]
        await self._patient_code_date(targets)
        await self._sorted_pages(targets)
        await self._sorted_by_code()
        await self._include(targets)

    async def _patient_code_date(self, targets: list[str]) -> None:
        system, code = CONTRACT_HOURS.split("|")
        since = self.raw.when(dates.parse_range(DATE_FROM)[0])

        async def ours_fn(pid: str) -> int:
            body = await self.search([("patient", pid), ("code", CONTRACT_HOURS),
                                      ("date", f"ge{DATE_FROM}")])
            return len(body.get("entry", []))

        async def raw_fn(pid: str) -> int:
            await self.raw.scalar(sql.COUNT_PATIENT_CODE_DATE, pid, system, code, since)
            rows = await self.raw.fetch(sql.SEARCH_PATIENT_CODE_DATE, pid, system, code, since,
                                        PAGE + 1)
            return len(rows[:PAGE])

        await self._compare("search 1: patient+code+date=ge", targets, ours_fn, raw_fn)

    async def _sorted_pages(self, targets: list[str]) -> None:
        """`patient=X&_sort=-date&_count=50`, every page, following the next links."""
        ours_pages: list[float] = []
        raw_pages: list[float] = []
        ours_seen = raw_seen = 0
        deadline = time.perf_counter() + self.args.budget
        for n, pid in enumerate(targets):
            if time.perf_counter() > deadline and n >= MIN_SAMPLES:
                self._budget_note("search 2", n, len(targets))
                break
            query = [("patient", pid), ("_sort", "-date"), ("_count", str(SORT_PAGE))]
            ours_seen += await self._walk(query, ours_pages, self.args.max_pages)
            raw_seen += await self._raw_walk(
                lambda pid=pid: self.raw.scalar(sql.COUNT_BY_PATIENT, pid),
                lambda pid=pid: self.raw.fetch(sql.SORTED_BY_PATIENT_FIRST, pid, SORT_PAGE + 1),
                lambda h, pk, pid=pid: self.raw.fetch(sql.SORTED_BY_PATIENT_NEXT, pid, h, h, pk,
                                                      SORT_PAGE + 1),
                raw_pages)
        self._check("search 2: patient, _sort=-date", ours_seen, raw_seen)
        self.report.add_latency("search 2: patient&_sort=-date&_count=50, per page",
                                ours_pages, raw_pages)

    async def _sorted_by_code(self) -> None:
        """`code=Y&_sort=-date&_count=50` without a patient: a quarter of all Observations."""
        system, code = CONTRACT_HOURS.split("|")
        ours_pages: list[float] = []
        raw_pages: list[float] = []
        ours_seen = raw_seen = 0
        deadline = time.perf_counter() + self.args.budget
        for n in range(self.args.code_searches):
            if time.perf_counter() > deadline and n >= 2:
                self._budget_note("search 2b", n, self.args.code_searches)
                break
            query = [("code", CONTRACT_HOURS), ("_sort", "-date"), ("_count", str(SORT_PAGE))]
            ours_seen += await self._walk(query, ours_pages, self.args.max_pages)
            raw_seen += await self._raw_walk(
                lambda: self.raw.scalar(sql.COUNT_BY_CODE, system, code),
                lambda: self.raw.fetch(sql.SORTED_BY_CODE_FIRST, system, code, SORT_PAGE + 1),
                lambda h, pk: self.raw.fetch(sql.SORTED_BY_CODE_NEXT, system, code, h, h, pk,
                                             SORT_PAGE + 1),
                raw_pages)
        self._check("search 2b: code, _sort=-date", ours_seen, raw_seen)
        self.report.add_latency(f"search 2b: code&_sort=-date&_count=50, per page "
                                f"(<= {self.args.max_pages})", ours_pages, raw_pages)

    async def _walk(self, query: list[tuple[str, str]], pages: list[float], limit: int) -> int:
        seen = 0
        for _ in range(limit):
            t0 = time.perf_counter()
            body = await self.search(query)
            pages.append(time.perf_counter() - t0)
            seen += len(body.get("entry", []))
            nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
            if not nxt:
                break
            query = parse_qsl(urlsplit(nxt[0]).query, keep_blank_values=True)
        return seen

    async def _raw_walk(self, count: Callable[[], Awaitable[Any]],
                        first: Callable[[], Awaitable[list[Any]]],
                        nxt: Callable[[Any, Any], Awaitable[list[Any]]],
                        pages: list[float]) -> int:
        """The same pages by hand: a count (our Bundles carry a total) and a keyset query."""
        seen = 0
        last: Any = None
        for page_no in range(self.args.max_pages):
            t0 = time.perf_counter()
            await count()
            if page_no == 0:
                rows = await first()
            else:
                rows = await nxt(last[1], last[2])
            pages.append(time.perf_counter() - t0)
            more = len(rows) > SORT_PAGE
            rows = rows[:SORT_PAGE]
            seen += len(rows)
            if not more or not rows:
                break
            last = rows[-1]
        return seen

    async def _include(self, targets: list[str]) -> None:
        async def ours_fn(pid: str) -> int:
            body = await self.search([("patient", pid), ("_include", "Observation:subject")])
            return len(body.get("entry", []))

        async def raw_fn(pid: str) -> int:
            await self.raw.scalar(sql.INCLUDE_COUNT, pid)
            matches = (await self.raw.fetch(sql.INCLUDE_MATCHES, pid, PAGE + 1))[:PAGE]
            pks = [m[0] for m in matches]
            included = await self.raw.fetch(sql.include_subjects(len(pks)), *pks) if pks else []
            return len(matches) + len(included)

        await self._compare("search 3: patient&_include=Observation:subject", targets, ours_fn,
                            raw_fn)

    async def _compare(self, name: str, targets: list[str],
                       ours_fn: Callable[[str], Awaitable[int]],
                       raw_fn: Callable[[str], Awaitable[int]]) -> None:
        ours: list[float] = []
        raw: list[float] = []
        ours_seen = raw_seen = 0
        deadline = time.perf_counter() + self.args.budget
        for pid in targets:
            if time.perf_counter() > deadline and len(ours) >= MIN_SAMPLES:
                self._budget_note(name, len(ours), len(targets))
                break
            t0 = time.perf_counter()
            ours_seen += await ours_fn(pid)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw_seen += await raw_fn(pid)
            raw.append(time.perf_counter() - t0)
        self._check(name, ours_seen, raw_seen)
        self.report.add_latency(name, ours, raw)

    def _budget_note(self, name: str, done: int, planned: int) -> None:
        self.report.notes.append(f"{name}: time budget ({self.args.budget:.0f} s) reached after "
                                 f"{done} of {planned} runs")

    def _check(self, name: str, ours: int, raw: int) -> None:
        """Both sides must return the same number of entries, or the comparison is void."""
        if ours != raw:
            self.report.notes.append(f"MISMATCH {name}: ours returned {ours} entries, raw {raw}")

    # -- size ------------------------------------------------------------------------------
    async def size(self) -> None:
        scratch = await self.raw.scratch_size()
        if self.db.kind == "sqlite":
            await self.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            total = file_size(self.db.raw_dsn)
        else:
            total = int(await self.raw.scalar("SELECT pg_database_size(current_database())"))
        mib = 1024 * 1024
        self.report.rows.append(Row("database size (ours: all but the raw table)", "MiB",
                                    (total - scratch) / mib, scratch / mib))
        obs = await self.raw.scalar("SELECT count(*) FROM resource WHERE resource_type = $1",
                                    "Observation")
        self.report.notes.append(f"{obs} Observations in the database when searched")


async def _timed(fn: Callable[[str], Awaitable[None]], ids: list[str],
                 budget: float) -> list[float]:
    for rid in ids[: min(20, len(ids))]:  # warm caches, statement caches and the pool
        await fn(rid)
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    for rid in ids:
        if time.perf_counter() > deadline and len(samples) >= MIN_SAMPLES:
            break
        t0 = time.perf_counter()
        await fn(rid)
        samples.append(time.perf_counter() - t0)
    return samples


async def _run(db: Database, args: argparse.Namespace) -> Report:
    settings = Settings(database_url=db.url, base_url=BASE, max_page_size=500,
                        db_pool_size=5)
    rt = build_runtime(settings)
    raw = await RawDb.connect(db.kind, db.raw_dsn)
    bench = Bench(db, rt, raw, args)
    try:
        await raw.create_scratch()
        t0 = time.perf_counter()
        if args.loader == "import":
            await bench.load_by_import()
        else:
            await bench.load()
        if db.kind == "postgres":
            await raw.execute("ANALYZE")  # what autovacuum does shortly after a bulk load
        await bench.single_creates()
        await bench.reads()
        await bench.searches()
        await bench.size()
        bench.report.notes.append(f"run took {time.perf_counter() - t0:.0f} s")
    finally:
        await raw.close()
        await rt.close()
    return bench.report


def run_one(kind: str, args: argparse.Namespace) -> Report:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pgo-bench-"))
    db = make_database(kind, workdir, args.pg_admin)
    print(f"[{kind}] fresh database {db.name}; migrating", file=sys.stderr, flush=True)
    try:
        upgrade(db.url)
        return asyncio.run(_run(db, args))
    finally:
        if args.keep:
            print(f"[{kind}] kept {db.url}", file=sys.stderr)
        else:
            db.drop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_store", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--obs", type=int, default=100, help="Observations per patient")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies --patients")
    p.add_argument("--bundle-size", type=int, default=100)
    p.add_argument("--loader", choices=("transaction", "import"), default="transaction",
                   help="load through 100-entry transaction Bundles of POSTs, or through the "
                        "bulk loader (pgo-work import's batches of PUTs)")
    p.add_argument("--single", type=int, default=2000, help="single creates to time")
    p.add_argument("--reads", type=int, default=3000, help="reads and vreads to time")
    p.add_argument("--searches", type=int, default=300, help="patients to run each search for")
    p.add_argument("--code-searches", type=int, default=20,
                   help="runs of the search without a patient (code + sort)")
    p.add_argument("--max-pages", type=int, default=5, help="next links to follow per search")
    p.add_argument("--budget", type=float, default=90.0,
                   help="seconds per read or search series before it stops early (at least 5 runs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT,
                   help="PostgreSQL URL to create and drop the benchmark database with")
    p.add_argument("--workdir", help="folder for the SQLite file (default: a temp folder)")
    p.add_argument("--keep", action="store_true", help="do not drop the databases afterwards")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--progress", action="store_true", help="report load progress on stderr")
    args = p.parse_args(argv)
    args.patients = max(1, round(args.patients * args.scale))
    args.single = min(args.single, max(1, args.patients * args.obs))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"pgo-work store benchmark: {args.patients} patients x {args.obs} Observations "
          f"(codes: {OBS_SYSTEM} and LOINC 74165-2)")
    reports = []
    for kind in kinds:
        report = run_one(kind, args)
        report.print()
        reports.append(report)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args),
                                               "reports": [r.as_json() for r in reports]},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
