"""Soak: 70 % reads, 20 % searches, 10 % creates at 16 connections for a configurable time,
on PostgreSQL with 2 workers and on SQLite (2 workers too: two writer processes on one file).

Figures per 30 s window (throughput, p50/p95/p99), errors by status, worker RSS at start and end
(growth beyond a bound fails), and the AuditEvent count against the audited requests: every
request here touches a patient's record, so each one answered must have left one AuditEvent.
SQLite must never answer "database is locked" as a 5xx."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from .common import Config, Result, Server, count_rows, database, headers, percentile, rss_mb, token

CONNECTIONS = 16
WINDOW = 30.0
SEED_PATIENTS = 50
LEAK_MB = 100.0
"""A worker whose RSS grows more than this (and more than half) over the soak fails."""


@dataclass
class Tally:
    latencies: dict[int, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    locked_5xx: int = 0
    audited: int = 0


async def _client_loop(client: httpx.AsyncClient, tok: str, ids: list[str], until: float,
                       start: float, window: float, tally: Tally, rng: random.Random) -> None:
    while time.monotonic() < until:
        roll = rng.random()
        began = time.monotonic()
        try:
            if roll < 0.7:
                resp = await client.get(f"Patient/{rng.choice(ids)}", headers=headers(tok))
            elif roll < 0.9:
                resp = await client.get("Patient", headers=headers(tok),
                                        params={"identifier": f"urn:soak|{rng.randrange(SEED_PATIENTS)}"})
            else:
                resp = await client.post("Patient", headers=headers(tok, True), json={
                    "resourceType": "Patient", "identifier": [
                        {"system": "urn:soak-new", "value": str(rng.random())}]})
                if resp.status_code == 201:
                    ids.append(resp.json()["id"])
            status = str(resp.status_code)
            if resp.status_code >= 500 and "locked" in resp.text:
                tally.locked_5xx += 1
            if resp.is_success:
                tally.audited += 1
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        tally.statuses[status] += 1
        slot = int((began - start) // window)
        tally.latencies.setdefault(slot, []).append(time.monotonic() - began)


async def _soak(base: str, tok: str, ids: list[str], seconds: float, window: float) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base + "/", limits=limits, timeout=60) as client:
        start = time.monotonic()
        until = start + seconds
        await asyncio.gather(*[
            _client_loop(client, tok, ids, until, start, window, tally, random.Random(i))
            for i in range(CONNECTIONS)])
    return tally


def _seed(base: str, tok: str) -> list[str]:
    ids = []
    with httpx.Client(base_url=base + "/", timeout=30) as client:
        for i in range(SEED_PATIENTS):
            resp = client.post("Patient", headers=headers(tok, True), json={
                "resourceType": "Patient", "identifier": [{"system": "urn:soak", "value": str(i)}]})
            resp.raise_for_status()
            ids.append(resp.json()["id"])
    return ids


def run_on(kind: str, cfg: Config) -> Result:
    result = Result(f"soak ({kind}, 2 workers, {CONNECTIONS} connections)")
    window = min(WINDOW, max(5.0, cfg.soak_seconds / 4))
    with database(kind) as url, Server(url, workers=2) as server:
        tok = token(url, server.base)
        ids = _seed(base=server.base, tok=tok)
        audits_before = count_rows(url, "AuditEvent")
        rss_start = {pid: rss_mb(pid) for pid in server.worker_pids()}
        tally = asyncio.run(_soak(server.base, tok, ids, cfg.soak_seconds, window))
        time.sleep(0.5)
        rss_end = {pid: rss_mb(pid) for pid in rss_start}
        audits = count_rows(url, "AuditEvent") - audits_before
        log = server.log_text()
    total = sum(tally.statuses.values())
    result.add("seconds / window", f"{cfg.soak_seconds:.0f} / {window:.0f}")
    result.add("requests", total)
    for slot, values in sorted(tally.latencies.items()):
        ms = [v * 1000 for v in values]
        result.add(f"window {slot} ({slot * window:.0f}-{(slot + 1) * window:.0f} s)",
                   f"{len(values) / window:.1f} req/s, p50 {percentile(ms, 50):.0f} ms, "
                   f"p95 {percentile(ms, 95):.0f} ms, p99 {percentile(ms, 99):.0f} ms")
    result.add("answers by status", dict(sorted(tally.statuses.items())))
    result.add("worker RSS MB start -> end",
               ", ".join(f"{rss_start[p]:.0f} -> {rss_end[p]:.0f}" for p in rss_start))
    result.add("audited requests (2xx) / AuditEvents written", f"{tally.audited} / {audits}")
    result.add("'database is locked' 5xx", tally.locked_5xx)
    errors = {s: n for s, n in tally.statuses.items() if not s.isdigit() or s[0] == "5"}
    result.check(not errors, f"server errors or failed connections: {errors}")
    result.check(tally.locked_5xx == 0 and "database is locked" not in log,
                 "'database is locked' reached a client or the log")
    result.check(audits == tally.audited, f"{audits} AuditEvents for {tally.audited} requests")
    for pid, start in rss_start.items():
        grew = rss_end[pid] - start
        result.check(not (grew > LEAK_MB and grew > start / 2),
                     f"worker {pid} RSS grew {grew:.0f} MB")
    return result


def run(cfg: Config) -> list[Result]:
    return [run_on("postgres", cfg), run_on("sqlite", cfg)]
