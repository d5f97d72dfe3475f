"""Where one FHIR read spends its time: pyinstrument over reads through the whole ASGI app.

    .venv/bin/python -m benchmarks.profile_read --reads 300 --out /tmp/prof-read

A fresh PostgreSQL database (or `--db sqlite`), one Patient with Observations and a Consent
sharing the record with an occupational physician, then `--reads` GET Observation/{id} through
the app in process (httpx's ASGI transport: routing, dependencies, token verification,
consent, store, audit, response; no network) with the operator's token and with the
physician's, each under pyinstrument. Writes `<out>-operator.txt/.html` and
`<out>-physician.txt/.html`, and prints the mean wall time per read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from service.access.issuer import mint_dev_token
from service.config import Settings
from service.main import create_app
from service.store.migrate import upgrade

from .bench_http import PRACTITIONER
from .common import PG_ADMIN_DEFAULT, make_database, observation

FHIR_JSON = "application/fhir+json"
BASE = "http://testserver/fhir"


async def run(args: argparse.Namespace, url: str) -> None:
    from pyinstrument import Profiler

    settings = Settings(database_url=url, base_url=BASE)
    operator = await mint_dev_token(settings, scope="system/*.cruds", role="service",
                                    minutes=120)
    physician = await mint_dev_token(settings, scope="user/*.rs", role="occupational-physician",
                                     fhir_user=f"Practitioner/{PRACTITIONER}", minutes=120)
    app = create_app(settings)
    rng = random.Random(7)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        head = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON,
                "Authorization": f"Bearer {operator}"}
        pid = (await client.post("/Patient", headers=head, content=json.dumps(
            {"resourceType": "Patient", "name": [{"family": "Profile"}]}))).json()["id"]
        await client.put(f"/Practitioner/{PRACTITIONER}", headers=head, content=json.dumps(
            {"resourceType": "Practitioner", "id": PRACTITIONER, "name": [{"family": "P"}]}))
        await client.post("/Consent", headers=head, content=json.dumps({
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{pid}"},
            "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                     "v3-ParticipationType", "code": "PRCP"}]},
                "reference": {"reference": f"Practitioner/{PRACTITIONER}"}}]}]}}))
        oids = []
        for _ in range(20):
            resp = await client.post("/Observation", headers=head, content=json.dumps(
                observation(rng, f"Patient/{pid}")))
            resp.raise_for_status()
            oids.append(resp.json()["id"])
        for who, token in (("operator", operator), ("physician", physician)):
            headers = {"Accept": FHIR_JSON, "Authorization": f"Bearer {token}"}
            for oid in oids:  # warm: caches, pools, prepared statements
                (await client.get(f"/Observation/{oid}", headers=headers)).raise_for_status()
            profiler = Profiler(async_mode="enabled", interval=0.0005)
            t0 = time.perf_counter()
            with profiler:
                for i in range(args.reads):
                    resp = await client.get(f"/Observation/{oids[i % len(oids)]}",
                                            headers=headers)
                    if resp.status_code != 200:
                        raise RuntimeError(f"{who}: {resp.status_code} {resp.text[:200]}")
            per = (time.perf_counter() - t0) / args.reads * 1000
            Path(f"{args.out}-{who}.txt").write_text(profiler.output_text(show_all=False))
            Path(f"{args.out}-{who}.html").write_text(profiler.output_html())
            print(f"{who}: {per:.2f} ms per read (wall, profiled) -> {args.out}-{who}.txt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_read", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--out", default="/tmp/prof-read")
    p.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT)
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="pgo-prof-read-"))
    db = make_database(args.db, workdir, args.pg_admin)
    try:
        upgrade(db.url)
        asyncio.run(run(args, db.url))
    finally:
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
