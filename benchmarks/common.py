"""What both benchmarks share: fresh databases, synthetic work data and latency statistics.

The data imitates what pgo-work stores most: per patient a stream of work Observations
(contract hours, hours worked, work status, LOINC 74165-2 employment history) spread over six
years, each pointing at its Patient, so searches see realistic selectivity.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
OBS_SYSTEM = "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation"
WORK_STATUS_SYSTEM = "https://pgo-work.nl/fhir/CodeSystem/work-status"
PROFILE_BASE = "https://pgo-work.nl/fhir/StructureDefinition"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
BENCH_IDENTIFIER = "https://pgo-work.nl/fhir/NamingSystem/benchmark-patient"
CONTRACT_HOURS = f"{OBS_SYSTEM}|contract-hours-per-week"
"""The token the code searches use: about a quarter of all Observations carry it."""
EPOCH = datetime(2019, 1, 1)
SPAN_SECONDS = 6 * 365 * 86400
WORK_STATUSES = ("working", "partially-working", "sick-leave", "not-working")


# -- databases ---------------------------------------------------------------------------------
@dataclass
class Database:
    kind: str
    url: str
    """SQLAlchemy async URL, as PGO_WORK_DATABASE_URL takes it."""
    raw_dsn: str
    """What the bare driver connects to: a file path (SQLite) or a libpq DSN (PostgreSQL)."""
    drop: Callable[[], None]
    name: str = ""


async def _pg_admin(admin: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def make_database(kind: str, workdir: Path, pg_admin: str = PG_ADMIN_DEFAULT) -> Database:
    """A fresh, empty database of `kind`, and how to remove it afterwards."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite3"

        def drop_file() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return Database(kind, f"sqlite+aiosqlite:///{path}", str(path), drop_file, path.name)
    if kind == "postgres":
        name = f"pgo_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_admin(pg_admin, f'CREATE DATABASE "{name}"'))
        host = pg_admin.split("://", 1)[1].rsplit("/", 1)[0]

        def drop_db() -> None:
            asyncio.run(_pg_admin(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        return Database(kind, f"postgresql+asyncpg://{host}/{name}", f"postgresql://{host}/{name}",
                        drop_db, name)
    raise ValueError(f"unknown database kind {kind!r}")


def file_size(path: str) -> int:
    return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
               if Path(f"{path}{s}").exists())


# -- data --------------------------------------------------------------------------------------
def patient(rng: random.Random, n: int) -> dict[str, Any]:
    family = rng.choice(("de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Mulder"))
    given = rng.choice(("Anna", "Sanne", "Daan", "Lucas", "Emma", "Noah", "Fleur", "Bram"))
    born = datetime(1955, 1, 1) + timedelta(days=rng.randrange(0, 45 * 365))
    return {
        "resourceType": "Patient",
        "identifier": [{"system": BENCH_IDENTIFIER, "value": f"p{n:08d}"}],
        "active": True,
        "name": [{"family": family, "given": [given]}],
        "gender": rng.choice(("female", "male")),
        "birthDate": born.date().isoformat(),
    }


def observation(rng: random.Random, subject: str) -> dict[str, Any]:
    """One of four work Observations, effective at a random moment in 2019-2024."""
    when = EPOCH + timedelta(seconds=rng.randrange(SPAN_SECONDS))
    effective = when.strftime("%Y-%m-%dT%H:%M:%S+01:00")
    kind = rng.randrange(4)
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "social-history"}]}],
        "subject": {"reference": subject},
        "effectiveDateTime": effective,
    }
    if kind in (0, 1):
        # The profiles want a Period: a contract year, or the week the hours were worked.
        code, profile, days = (("contract-hours-per-week", "contract-hours", 365) if kind == 0
                               else ("worked-hours-per-week", "worked-hours", 7))
        del obs["effectiveDateTime"]
        end = (when + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S+01:00")
        obs["effectivePeriod"] = {"start": effective, "end": end}
        obs["meta"] = {"profile": [f"{PROFILE_BASE}/{profile}"]}
        obs["code"] = {"coding": [{"system": OBS_SYSTEM, "code": code}]}
        obs["valueQuantity"] = {"value": rng.choice((8, 12, 16, 20, 24, 28, 32, 36, 38, 40)),
                                "unit": "h/wk", "system": UCUM, "code": "h/wk"}
    elif kind == 2:
        obs["meta"] = {"profile": [f"{PROFILE_BASE}/work-status"]}
        obs["code"] = {"coding": [{"system": OBS_SYSTEM, "code": "work-status"}]}
        status = rng.choice(WORK_STATUSES)
        obs["valueCodeableConcept"] = {"coding": [{"system": WORK_STATUS_SYSTEM, "code": status}]}
        if status == "partially-working":
            obs["component"] = [{
                "code": {"coding": [{"system": OBS_SYSTEM, "code": "work-percentage"}]},
                "valueQuantity": {"value": rng.choice((20, 40, 50, 60, 80)), "unit": "%",
                                  "system": UCUM, "code": "%"}}]
    else:
        obs["code"] = {"coding": [{"system": LOINC, "code": "74165-2",
                                   "display": "History of employment status NHIS"}]}
        obs["valueCodeableConcept"] = {"coding": [{"system": WORK_STATUS_SYSTEM,
                                                   "code": rng.choice(WORK_STATUSES)}],
                                       "text": "employment status"}
    return obs


@dataclass
class Entry:
    patient_index: int
    resource: dict[str, Any]
    is_patient: bool


def entry_stream(rng: random.Random, patients: int, obs_per_patient: int) -> Iterator[Entry]:
    """Each patient, then its Observations: the order a client uploading records would use."""
    for p in range(patients):
        yield Entry(p, patient(rng, p), True)
        for _ in range(obs_per_patient):
            yield Entry(p, observation(rng, ""), False)


def transaction_bundles(rng: random.Random, patients: int, obs_per_patient: int, size: int,
                        known: dict[int, str]) -> Iterator[tuple[dict[str, Any], list[Entry]]]:
    """100-entry transaction Bundles: a Patient and the Observations that follow it refer to it by
    `urn:uuid:` inside the same Bundle, and by its server id (filled into `known` by the caller
    from the previous response) when the Bundle boundary fell between them."""
    chunk: list[Entry] = []
    for entry in entry_stream(rng, patients, obs_per_patient):
        chunk.append(entry)
        if len(chunk) == size:
            yield _bundle(chunk, known), chunk
            chunk = []
    if chunk:
        yield _bundle(chunk, known), chunk


def _bundle(chunk: list[Entry], known: dict[int, str]) -> dict[str, Any]:
    urns: dict[int, str] = {}
    entries = []
    for e in chunk:
        if e.is_patient:
            urns[e.patient_index] = f"urn:uuid:{uuid.uuid4()}"
            entries.append({"fullUrl": urns[e.patient_index], "resource": e.resource,
                            "request": {"method": "POST", "url": "Patient"}})
        else:
            ref = urns.get(e.patient_index) or known[e.patient_index]
            e.resource["subject"] = {"reference": ref}
            entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": e.resource,
                            "request": {"method": "POST", "url": "Observation"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# -- statistics --------------------------------------------------------------------------------
def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of `samples` (seconds in, seconds out)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds and the sequential rate (operations per second)."""
    total = sum(samples)
    return {
        "n": len(samples),
        "p50": percentile(samples, 50) * 1000,
        "p95": percentile(samples, 95) * 1000,
        "p99": percentile(samples, 99) * 1000,
        "rate": len(samples) / total if total else math.nan,
    }
