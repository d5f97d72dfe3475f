"""Crash atomicity: a 200-entry transaction, the server SIGKILLed 0-500 ms after it was sent.

Each round's Patient and 199 Observations carry the round's identifier; after the restart the
database holds all 200 or none, and a committed round has its AuditEvent (the audit commits in
the same database transaction as the write)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import httpx

from .common import Config, Result, Server, database, headers, token

SYSTEM = "urn:pgo-work:reliability:round"
ENTRIES = 200


def bundle(round_id: str) -> dict[str, Any]:
    patient = f"urn:uuid:{uuid.uuid4()}"
    ident = [{"system": SYSTEM, "value": round_id}]
    entries = [{"fullUrl": patient, "resource": {"resourceType": "Patient", "identifier": ident,
                                                 "gender": "female"},
                "request": {"method": "POST", "url": "Patient"}}]
    for i in range(ENTRIES - 1):
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {
            "resourceType": "Observation", "status": "final", "identifier": ident,
            "code": {"text": f"reliability measurement {i}"},
            "subject": {"reference": patient}, "valueInteger": i},
            "request": {"method": "POST", "url": "Observation"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _count(client: httpx.Client, rtype: str, round_id: str) -> int:
    resp = client.get(f"{rtype}", params={"identifier": f"{SYSTEM}|{round_id}",
                                          "_summary": "count"})
    resp.raise_for_status()
    return int(resp.json()["total"])


def _audited(client: httpx.Client, round_id: str) -> bool:
    resp = client.get("Patient", params={"identifier": f"{SYSTEM}|{round_id}"})
    resp.raise_for_status()
    entries = resp.json().get("entry", [])
    if not entries:
        return False
    pid = entries[0]["resource"]["id"]
    audit = client.get("AuditEvent", params={"patient": f"Patient/{pid}", "subtype": "transaction"})
    audit.raise_for_status()
    return bool(audit.json().get("entry"))


def _calibrate(base: str, tok: str, kind: str) -> float:
    """Seconds an uninterrupted transaction takes on this machine (median of three)."""
    times = []
    for i in range(3):
        began = time.monotonic()
        resp = httpx.post(base, json=bundle(f"{kind}-calibration-{i}"), headers=headers(tok, True),
                          timeout=120)
        resp.raise_for_status()
        times.append(time.monotonic() - began)
    return sorted(times)[1]


def run_on(kind: str, cfg: Config, rng: random.Random) -> Result:
    result = Result(f"crash atomicity ({kind})")
    counts = {"all": 0, "none": 0, "partial": 0, "answered 200": 0, "committed, no audit": 0}
    delays: list[float] = []
    with database(kind) as url:
        server = Server(url)
        server.start()
        tok = token(url, server.base)
        try:
            took = _calibrate(server.base, tok, kind)
            result.add("uninterrupted transaction (ms)", f"{took * 1000:.0f}")
            for n in range(cfg.crash_rounds):
                round_id = f"{kind}-{n}-{uuid.uuid4().hex[:8]}"
                # Even rounds: 0-500 ms after sending (the window). Odd rounds: around
                # the moment an uninterrupted transaction commits, where a kill is likeliest
                # to find a half-done commit.
                delay = rng.uniform(0, 0.5) if n % 2 == 0 else rng.uniform(0.7 * took, 1.1 * took)
                delays.append(delay)
                answered: list[int] = []

                def send(body: dict[str, Any] = bundle(round_id),
                         answered: list[int] = answered) -> None:
                    try:
                        r = httpx.post(server.base, json=body, headers=headers(tok, True),
                                       timeout=60)
                        answered.append(r.status_code)
                    except httpx.HTTPError:
                        pass

                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                time.sleep(delay)
                server.kill()
                sender.join(timeout=10)
                if answered and answered[0] == 200:
                    counts["answered 200"] += 1
                server.start()
                with httpx.Client(base_url=server.base + "/", headers=headers(tok),
                                  timeout=30) as client:
                    patients = _count(client, "Patient", round_id)
                    observations = _count(client, "Observation", round_id)
                    if patients == 1 and observations == ENTRIES - 1:
                        counts["all"] += 1
                        if not _audited(client, round_id):
                            counts["committed, no audit"] += 1
                    elif patients == 0 and observations == 0:
                        counts["none"] += 1
                        if answered and answered[0] == 200:
                            result.failures.append(f"round {round_id} answered 200 but is gone")
                    else:
                        counts["partial"] += 1
                        result.failures.append(
                            f"round {round_id}: {patients} Patient, {observations} Observations")
        finally:
            server.__exit__()
    result.add("rounds", cfg.crash_rounds)
    result.add("entries per transaction", ENTRIES)
    result.add("kill delay ms (min/max), odd rounds near the commit",
               f"{min(delays) * 1000:.0f} / {max(delays) * 1000:.0f}" if delays else "-")
    for label, value in counts.items():
        result.add(f"rounds {label}", value)
    result.check(counts["partial"] == 0, f"{counts['partial']} partial transactions")
    result.check(counts["committed, no audit"] == 0,
                 f"{counts['committed, no audit']} committed rounds without AuditEvent")
    return result


def run(cfg: Config) -> list[Result]:
    rng = random.Random(14)
    return [run_on("postgres", cfg, rng), run_on("sqlite", cfg, rng)]
