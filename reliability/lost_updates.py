"""Lost updates and duplicate conditional creates: two server processes on one PostgreSQL.

20 clients read-modify-write one counter (Patient.multipleBirthInteger) with If-Match and retry
on 412; afterwards the counter equals the number of 2xx updates and the history has one version
per update plus the create. Then rounds of 20 parallel conditional creates with one
If-None-Exist across both servers: exactly one resource per round."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .common import Config, Result, Server, count_rows, database, headers, token

CLIENTS = 20


def _updater(bases: list[str], tok: str, pid: str, until: float, tally: Counter[str],
             lock: threading.Lock, index: int) -> None:
    base = bases[index % len(bases)]
    with httpx.Client(base_url=base + "/", timeout=30) as client:
        while time.monotonic() < until:
            got = client.get(f"Patient/{pid}", headers=headers(tok))
            if got.status_code != 200:
                with lock:
                    tally[f"read {got.status_code}"] += 1
                continue
            body = got.json()
            body["multipleBirthInteger"] = int(body.get("multipleBirthInteger", 0)) + 1
            put = client.put(f"Patient/{pid}", json=body,
                             headers={**headers(tok, True), "If-Match": got.headers["etag"]})
            with lock:
                tally["2xx" if put.is_success else str(put.status_code)] += 1


def _updates(bases: list[str], tok: str, seconds: float, result: Result) -> None:
    with httpx.Client(timeout=30) as client:
        created = client.post(f"{bases[0]}/Patient", headers=headers(tok, True),
                              json={"resourceType": "Patient", "multipleBirthInteger": 0})
        created.raise_for_status()
        pid = created.json()["id"]
        tally: Counter[str] = Counter()
        lock = threading.Lock()
        until = time.monotonic() + seconds
        started = time.monotonic()
        threads = [threading.Thread(target=_updater, args=(bases, tok, pid, until, tally, lock, i))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 60)
        took = time.monotonic() - started
        final = client.get(f"{bases[1]}/Patient/{pid}", headers=headers(tok)).json()
        versions = _history_length(client, f"{bases[0]}/Patient/{pid}/_history", tok)
    value = int(final.get("multipleBirthInteger", 0))
    ok = tally["2xx"]
    result.add("clients / servers", f"{CLIENTS} / {len(bases)}")
    result.add("seconds", f"{took:.1f}")
    result.add("updates answered 2xx", ok)
    result.add("412 (retried)", tally["412"])
    result.add("final counter", value)
    result.add("history versions", versions)
    result.add("lost updates", ok - value)
    fives = sum(n for k, n in tally.items() if k.split()[-1].startswith("5"))
    result.add("5xx", fives)
    others = {k: n for k, n in tally.items() if k not in ("2xx", "412")}
    result.add("other answers", dict(others) or "none")
    result.check(value == ok, f"counter {value} != {ok} successful updates")
    result.check(versions == ok + 1, f"history {versions} != {ok + 1}")
    result.check(fives == 0, f"{fives} 5xx answers")
    result.check(ok > 0, "no update succeeded")


def _history_length(client: httpx.Client, url: str, tok: str) -> int:
    """Versions in the history, following its pages (bounded)."""
    count, next_url = 0, f"{url}?_count=500"
    for _ in range(1000):
        page = client.get(next_url, headers=headers(tok)).json()
        count += len(page.get("entry", []))
        nxt = [link["url"] for link in page.get("link", []) if link.get("relation") == "next"]
        if not nxt:
            break
        next_url = nxt[0]
    return count


def _creates(bases: list[str], tok: str, url: str, rounds: int, result: Result) -> None:
    duplicates = 0
    statuses: Counter[int] = Counter()
    before = count_rows(url, "Patient")
    for n in range(rounds):
        value = f"cc-{n}-{uuid.uuid4().hex[:8]}"
        body = {"resourceType": "Patient",
                "identifier": [{"system": "urn:pgo-work:reliability:cc", "value": value}]}

        def post(i: int, body: dict[str, Any] = body, value: str = value) -> int:
            h = {**headers(tok, True),
                 "If-None-Exist": f"identifier=urn:pgo-work:reliability:cc|{value}"}
            return httpx.post(f"{bases[i % len(bases)]}/Patient", json=body, headers=h,
                              timeout=60).status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            got = list(pool.map(post, range(CLIENTS)))
        statuses.update(got)
        created = got.count(201)
        duplicates += max(0, created - 1)
        result.check(created == 1, f"round {n}: {created} created")
    made = count_rows(url, "Patient") - before
    result.add("conditional-create rounds x clients", f"{rounds} x {CLIENTS}")
    result.add("answers", dict(sorted(statuses.items())))
    result.add("Patients created", made)
    result.add("duplicates", duplicates)
    result.check(made == rounds, f"{made} Patients for {rounds} rounds")
    result.check(not any(s >= 500 for s in statuses), "5xx on conditional create")


def run(cfg: Config) -> list[Result]:
    result = Result("lost updates and duplicates (PostgreSQL, 2 servers)")
    with database("postgres") as url, Server(url) as one, \
            Server(url, public_base=one.base) as two:
        tok = token(url, one.base)
        bases = [one.base, two.base]
        _updates(bases, tok, 5 if cfg.quick else 30, result)
        _creates(bases, tok, url, 3 if cfg.quick else 10, result)
    return [result]
