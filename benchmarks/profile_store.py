"""Profile the ingest path and the read/search path with pyinstrument.

    .venv/bin/pip install pyinstrument
    python -m benchmarks.profile_store --db sqlite --patients 100 --obs 100 --out /tmp/prof

Loads a fresh database like bench_store (the load itself is profiled), then profiles reads,
vreads and the three searches, and writes one text and one HTML report per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from service.config import Settings
from service.store.migrate import upgrade

from .bench_store import BASE, Bench
from .bench_store import parse_args as bench_args
from .common import CONTRACT_HOURS, Database, make_database
from .raw import RawDb


async def _profiled(name: str, out: Path, work: Callable[[], Awaitable[Any]]) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="enabled")
    profiler.start()
    await work()
    profiler.stop()
    (out / f"{name}.txt").write_text(profiler.output_text(unicode=False, show_all=False))
    (out / f"{name}.html").write_text(profiler.output_html())
    print(f"wrote {out / name}.txt and .html", file=sys.stderr)


async def _run(db: Database, args: argparse.Namespace, out: Path) -> None:
    from service.runtime import build_runtime

    kind = db.kind
    rt = build_runtime(Settings(database_url=db.url, base_url=BASE, max_page_size=500))
    raw = await RawDb.connect(kind, db.raw_dsn)
    bench = Bench(db, rt, raw, bench_args(
        ["--patients", str(args.patients), "--obs", str(args.obs), "--single", "0"]))
    try:
        await raw.create_scratch()
        await _profiled(f"{kind}-ingest", out, bench.load)
        if kind == "postgres":
            await raw.execute("ANALYZE")
        rng = random.Random(1)
        ids = [rng.choice(bench.observations) for _ in range(args.reads)]
        pids = [rng.choice(bench.patients) for _ in range(args.searches)]

        async def reads() -> None:
            for rid in ids:
                async with rt.store(bench.access) as store:
                    await store.read("Observation", rid)
                    await store.vread("Observation", rid, "1")

        async def searches() -> None:
            for pid in pids:
                await bench.search([("patient", pid), ("code", CONTRACT_HOURS),
                                    ("date", "ge2022-01-01")])
                await bench.search([("patient", pid), ("_sort", "-date"), ("_count", "50")])
                await bench.search([("patient", pid), ("_include", "Observation:subject")])
            for _ in range(max(1, args.searches // 10)):
                await bench.search([("code", CONTRACT_HOURS), ("_sort", "-date"),
                                    ("_count", "50")])

        await _profiled(f"{kind}-read", out, reads)
        await _profiled(f"{kind}-search", out, searches)
    finally:
        await raw.close()
        await rt.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_store", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--patients", type=int, default=100)
    p.add_argument("--obs", type=int, default=100)
    p.add_argument("--reads", type=int, default=1000)
    p.add_argument("--searches", type=int, default=100)
    p.add_argument("--out", default="/tmp/pgo-work-profile")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = make_database(args.db, Path(tempfile.mkdtemp(prefix="pgo-prof-")))
    try:
        upgrade(db.url)
        asyncio.run(_run(db, args, out))
    finally:
        db.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
