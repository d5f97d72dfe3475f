"""`python -m reliability [--quick] [--only crash,soak,...]`: run the scenarios, print each
one's table (Markdown), optionally write them all to a file; exit 1 when a target is missed."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from datetime import UTC, datetime

from .common import Config, Result

SCENARIOS = ["crash", "lost_updates", "outage", "soak", "slow_clients", "hostile", "security"]


def _machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f", {int(f.readline().split()[1]) // 1024 // 1024} GiB RAM"
    except OSError:
        pass
    return f"{platform.node()}: {platform.system()} {platform.release()}, {cpus} CPUs{mem}, " \
           f"Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 5 crash rounds, 20 s soak, ~3,000 fuzz cases, short waits")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--soak-seconds", type=float, help="soak length (default 300; quick 20)")
    parser.add_argument("--crash-rounds", type=int, help="crash rounds (default 100; quick 5)")
    parser.add_argument("--fuzz-cases", type=int, help="schemathesis cases (default 10000)")
    parser.add_argument("--output", help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick, args.soak_seconds, args.crash_rounds, args.fuzz_cases)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or SCENARIOS
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    began = time.monotonic()
    header = (f"Reliability run ({'quick' if cfg.quick else 'full'}) "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}\n")
    print(header, flush=True)
    results: list[Result] = []
    for name in chosen:
        started = time.monotonic()
        try:
            got = importlib.import_module(f"reliability.{name}").run(cfg)
        except Exception as exc:  # a scenario that breaks is a failed scenario, not a crash
            broken = Result(name)
            broken.failures.append(f"{type(exc).__name__}: {exc}")
            got = [broken]
        got[-1].add(f"seconds ({name}, all its tables)", f"{time.monotonic() - started:.0f}")
        for result in got:
            print(result.table(), flush=True)
        results += got
    passed = sum(r.passed for r in results)
    summary = f"{passed} passed, {len(results) - passed} failed"
    print(f"scenarios: {summary} in {time.monotonic() - began:.0f} s")
    if args.output:
        with open(args.output, "w") as out:
            out.write(header + "\n" + "\n".join(r.table() for r in results) +
                      f"\nscenarios: {summary}\n")
    print(summary)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
