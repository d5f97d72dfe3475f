"""Consent overhead: the same reads and searches as a system client and as a professional.

    python -m benchmarks.bench_consent --db both --patients 200 --obs 50

On a fresh database of each kind it loads patients with Observations, one Practitioner, and for
every patient a Consent that shares the record with that Practitioner (PostgreSQL then gets the
VACUUM ANALYZE autovacuum would run). Then it runs the same work through the real per-request access
path (`build_policy` as `get_access` builds it for a verified token, `Runtime.store` opening
the policy in the request's transaction: scopes, consent resolution, SQL predicates, the audit
record) for the operator's system client (role `service`, scopes only) and for the professional
(scopes AND consent), alternating the two request by request (ABBA) so that drift in the
machine's speed falls on both alike. It prints p50/p95 of each and the overhead of the p50.
Both write the AuditEvent every request writes, so the difference is consent alone.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from service.access.dependencies import build_policy
from service.access.principal import Principal
from service.access.scopes import parse_scopes
from service.config import Settings
from service.rest.bundle import BundleProcessor
from service.rest.interactions import Interactions
from service.rest.messages import FhirRequest
from service.runtime import Runtime, build_runtime
from service.store.access import SystemAccess
from service.store.migrate import upgrade

from .common import CONTRACT_HOURS, make_database, summary, transaction_bundles

BASE = "http://127.0.0.1:8080/fhir"

PRACTITIONER = "bench-prac"


def consent(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"type": "deny", "provision": [{
            "type": "permit",
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "PRCP"}]}, "reference": {"reference": f"Practitioner/{PRACTITIONER}"}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                    "code": "access"}]}]}]},
    }


async def load(rt: Runtime, patients: int, obs: int,
               consents: list[dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
    """Patients with Observations, the Practitioner, and a Consent per patient (appended to
    `consents` as stored)."""
    rng = random.Random(7)
    known: dict[int, str] = {}
    patient_ids: list[str] = []
    obs_ids: list[str] = []
    for bundle, chunk in transaction_bundles(rng, patients, obs, 100, known):
        result = await BundleProcessor(rt).process(bundle, SystemAccess(), None)
        for entry, response in zip(chunk, result["entry"], strict=True):
            rid = response["response"]["location"].split("/")[1]
            if entry.is_patient:
                known[entry.patient_index] = f"Patient/{rid}"
                patient_ids.append(rid)
            else:
                obs_ids.append(rid)
    async with rt.store(SystemAccess(), write=True) as store:
        await store.update({"resourceType": "Practitioner", "id": PRACTITIONER,
                            "name": [{"family": "Bench"}]}, PRACTITIONER)
        for pid in patient_ids:
            stored = await store.create(rt.check_write(consent(pid)))
            if consents is not None:
                consents.append(stored.json())
    return patient_ids, obs_ids


def principal(professional: bool) -> Principal:
    if professional:
        return Principal(subject="prof", issuer="bench", scopes=parse_scopes("user/*.rs"),
                         fhir_user=f"Practitioner/{PRACTITIONER}", role="occupational-physician",
                         client_id="bench")
    return Principal(subject="ops", issuer="bench", scopes=parse_scopes("system/*.rs"),
                     role="service", client_id="bench-ops")


Timed = Callable[[int], Awaitable[float]]
"""One request; returns the seconds of the part that is timed."""


async def paired(n: int, a: Timed, b: Timed) -> tuple[list[float], list[float]]:
    """n timings of each, in the order a b b a a b b a ..., after one warm-up call of each."""
    await a(0)
    await b(0)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(n):
        order = ((0, a), (1, b)) if i % 2 == 0 else ((1, b), (0, a))
        for slot, fn in order:
            times[slot].append(await fn(i))
    return times


async def vacuum_analyze(rt: Runtime) -> None:
    """What autovacuum does soon after a bulk load on PostgreSQL: statistics for the planner
    and the visibility map that lets index-only scans skip the table."""
    if rt.engine.dialect.name == "postgresql":
        async with rt.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))


async def run(kind: str, url: str, args: argparse.Namespace) -> None:
    rt = build_runtime(Settings(database_url=url, base_url=BASE))
    try:
        t = time.perf_counter()
        consents: list[dict[str, Any]] = []
        patients, observations = await load(rt, args.patients, args.obs, consents)
        async with rt.store(SystemAccess(), write=True) as store:
            other = consent(patients[0])
            other["provision"]["provision"][0]["actor"][0]["reference"]["reference"] = (
                "Practitioner/someone-else")
            others = (await store.create(rt.check_write(other))).json()
        await vacuum_analyze(rt)
        print(f"[{kind}] loaded {len(patients)} patients, {len(observations)} Observations "
              f"and {len(patients)} Consents in {time.perf_counter() - t:.1f} s")
        ix = Interactions(rt)
        rng = random.Random(11)
        reads = [rng.choice(observations) for _ in range(args.reads)]
        targets = [rng.choice(patients) for _ in range(args.searches)]
        work: dict[str, tuple[int, Callable[[Principal, int], Awaitable[float]]]] = {}

        async def read(p: Principal, i: int) -> float:
            t = time.perf_counter()
            policy = await build_policy(p, rt)
            policy.start("read", None, ("Observation", reads[i]))
            async with rt.store(policy) as store:
                await store.read("Observation", reads[i])
            return time.perf_counter() - t

        async def read_after_change(p: Principal, i: int) -> float:
            """The first request after a Consent naming someone else changed: it bumps the
            change epochs of that someone only, so the professional's resolution stands. The
            write is not timed."""
            async with rt.store(SystemAccess(), write=True) as store:
                await store.update({**others, "dateTime": f"2026-11-{1 + i % 28:02d}"}, others["id"])
            return await read(p, i)

        async def read_after_own_change(p: Principal, i: int) -> float:
            """The first request after one of the professional's own Consents changed (a new
            version of it): resolved, and judged again. The write is not timed."""
            async with rt.store(SystemAccess(), write=True) as store:
                changed = consents[i % len(consents)]
                await store.update({**changed, "dateTime": f"2026-11-{1 + i % 28:02d}"}, changed["id"])
            return await read(p, i)

        def search(query: Callable[[str], list[tuple[str, str]]]) -> Callable[
                [Principal, int], Awaitable[float]]:
            totals: dict[int, int] = {}

            async def fn(p: Principal, i: int) -> float:
                t = time.perf_counter()
                policy = await build_policy(p, rt)
                req = FhirRequest("GET", "Observation", query=query(targets[i]))
                policy.start("search-type", None, None)
                async with rt.store(policy) as store:
                    bundle = (await ix.search(store, req)).body
                elapsed = time.perf_counter() - t
                # Every patient shared everything: both callers must get the same answer.
                assert bundle is not None and totals.setdefault(i, bundle["total"]) == bundle["total"]
                return elapsed
            return fn

        work["read"] = (args.reads, read)
        work["read, first after another's consent change"] = (args.reads, read_after_change)
        work["read, first after own consent change"] = (args.reads, read_after_own_change)
        work["search patient+code+date"] = (args.searches, search(lambda pid: [
            ("patient", pid), ("code", CONTRACT_HOURS), ("date", "ge2019-01-01")]))
        work["search patient&_sort=-date&_count=50"] = (args.searches, search(lambda pid: [
            ("patient", pid), ("_sort", "-date"), ("_count", "50")]))
        work["search patient&_include=subject"] = (args.searches, search(lambda pid: [
            ("patient", pid), ("_include", "Observation:subject")]))
        print(f"{'work':<44} {'system p50':>11} {'p95':>8} {'consent p50':>12} {'p95':>8} "
              f"{'overhead p50':>13}")
        for name, (n, fn) in work.items():
            system_times, prof_times = await paired(
                n, lambda i, fn=fn: fn(principal(False), i), lambda i, fn=fn: fn(principal(True), i))
            system, prof = summary(system_times), summary(prof_times)
            overhead = prof["p50"] / system["p50"] - 1
            print(f"{name:<44} {system['p50']:>9.2f}ms {system['p95']:>6.2f}ms "
                  f"{prof['p50']:>10.2f}ms {prof['p95']:>6.2f}ms {overhead:>12.0%}")
    finally:
        await rt.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--obs", type=int, default=50)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--searches", type=int, default=200)
    args = parser.parse_args(argv[1:])
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            db = make_database(kind, Path(tmp))
            try:
                upgrade(db.url)
                asyncio.run(run(kind, db.url, args))
            finally:
                db.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
