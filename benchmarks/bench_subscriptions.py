"""What subscriptions cost a write: single contract-hours creates (one transaction each, as a
POST) with no subscription, with subscriptions on the topic that do not match (another
patient's filter), and with subscriptions that match (each event judged under its owner's
policy and written to the outbox).

    python -m benchmarks.bench_subscriptions [--db sqlite|postgres] [--creates 300] [--subs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, text

from service.access.principal import principal_from_claims
from service.config import Settings
from service.rest.interactions import Interactions
from service.rest.messages import FhirRequest
from service.runtime import build_runtime
from service.store.access import SystemAccess
from service.store.migrate import upgrade
from service.subscriptions import resource

from .common import make_database

OBS = "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation"


def contract_hours(pid: str, hours: int) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": OBS, "code": "contract-hours-per-week"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectivePeriod": {"start": "2024-01-01"},
            "valueQuantity": {"value": hours, "unit": "h/wk", "system": "http://unitsofmeasure.org",
                              "code": "h/wk"}}


def subscription(pid: str) -> dict[str, object]:
    return {"resourceType": "Subscription", "status": "requested", "reason": "bench",
            "criteria": "https://pgo-work.nl/fhir/SubscriptionTopic/contract-hours",
            "_criteria": {"extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                       "backport-filter-criteria", "valueString": f"patient=Patient/{pid}"}]},
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/none"}}


async def run(url: str, creates: int, subs: int) -> None:
    rt = build_runtime(Settings(database_url=url, base_url="http://bench/fhir"))
    ix = Interactions(rt)
    statements = {"n": 0}

    def count(*_args: object) -> None:
        statements["n"] += 1

    event.listen(rt.engine.sync_engine, "before_cursor_execute", count)

    async def create(body: dict[str, object]) -> str:
        async with rt.store(SystemAccess(), write=True) as store:
            resp = await ix.create(store, FhirRequest("POST", str(body["resourceType"]), body=body))
        payload = resp.payload()
        return str(payload["id"]) if payload else ""

    writer = await create({"resourceType": "Patient", "name": [{"family": "Bench"}]})
    others = [await create({"resourceType": "Patient", "name": [{"family": f"O{i}"}]})
              for i in range(subs)]

    async def creates_ms() -> str:
        times = []
        statements["n"] = 0
        for i in range(creates):
            t0 = time.perf_counter()
            await create(contract_hours(writer, 20 + i % 20))
            times.append((time.perf_counter() - t0) * 1000)
        return (f"{statistics.median(times):.2f} ms, "
                f"{statements['n'] / creates:.1f} SQL statements per create")

    async def subscribe(pid: str, n: int) -> None:
        for _ in range(n):
            claims = {"sub": f"bench-{pid}", "iss": "bench", "scope": "launch/patient patient/*.rs",
                      "patient": pid}
            async with rt.engine.begin() as conn:
                await resource.create(rt, conn, principal_from_claims(claims, rt.base_url),
                                      subscription(pid))

    await creates_ms()  # warm-up
    print(f"no subscriptions:            median {await creates_ms()}")
    for pid in others:
        await subscribe(pid, 1)
    print(f"{subs} not matching:            median {await creates_ms()}")
    await subscribe(writer, subs)
    print(f"+{subs} matching (outbox rows): median {await creates_ms()}")
    async with rt.engine.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM subscription_event"))).scalar()
    print(f"outbox rows written: {events} (expected {subs * creates})")
    await rt.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--subs", type=int, default=10)
    args = parser.parse_args()
    db = make_database(args.db, Path(tempfile.mkdtemp()))
    try:
        upgrade(db.url)
        asyncio.run(run(db.url, args.creates, args.subs))
    finally:
        db.drop()


if __name__ == "__main__":
    main()
