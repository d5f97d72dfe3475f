"""Subscriptions across process deaths and instances: the outbox is the only truth, so a
server killed (SIGKILL) between the commit and the delivery loses nothing, and two worker
runners on one PostgreSQL never deliver the same event twice, nor two at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from service.runtime import build_runtime
from service.subscriptions.delivery import deliver_once

from .conftest import system_token
from .helpers import contract_hours, patient
from .server_process import serve
from .subscription_helpers import receiver, subscription

FIXED_BASE = "http://pgo-work.test/fhir"
"""One public base for every process of a test, so one token serves them all."""


def _post(base: str, headers: dict[str, str], resource: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{base}/{resource['resourceType']}", json=resource, headers=headers,
                      timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_killed_between_commit_and_delivery_the_notifications_still_arrive_in_order(
        database_url: str, tag: str) -> None:
    token = system_token(Settings(database_url=database_url, base_url=FIXED_BASE))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    env = {"PGO_WORK_BASE_URL": FIXED_BASE}
    with receiver() as box:
        with serve(database_url, env, args=("--no-worker",)) as first:
            pid = _post(first.base, headers, patient(tag))["id"]
            sid = _post(first.base, headers, subscription(
                "contract-hours", box.url, [f"patient=Patient/{pid}"]))["id"]
            written = [_post(first.base, headers, contract_hours(tag, pid, h, f"20{20 + i}-01-01"))
                       for i, h in enumerate((36, 32, 24))]
            assert first.proc is not None
            first.proc.kill()  # SIGKILL: no shutdown, nothing flushed
            first.proc.wait()
        assert box.received == []
        with serve(database_url, env):  # the worker runs in serve
            box.wait_for(lambda: sum(len(r.numbers) for r in box.of(sid, "event-notification")) >= 3)
        kinds = [r.kind for r in box.of(sid)]
        assert kinds[0] == "handshake"
        notes = box.of(sid, "event-notification")
        assert [n for r in notes for n in r.numbers] == [1, 2, 3]
        assert [f.rsplit("/", 1)[1] for r in notes for f in r.foci] == [w["id"] for w in written]


def test_two_worker_runners_on_one_postgresql_never_deliver_an_event_twice(
        settings: Settings, database_url: str, tag: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several instances share a PostgreSQL database (SQLite has one writer)")
    shared = settings.model_copy(update={"subscription_claim_batch": 1})
    token = system_token(shared)
    with receiver() as box:
        box.delay = 0.05  # slow enough that the runners overlap

        def write() -> list[str]:
            with TestClient(create_app(shared), base_url="http://testserver") as c:
                c.headers.update({"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/fhir+json"})
                pid = c.post("/fhir/Patient", json=patient(tag)).json()["id"]
                sids = [c.post("/fhir/Subscription", json=subscription(
                    "contract-hours", box.url, [f"patient=Patient/{pid}"], max_count=2)).json()["id"]
                    for _ in range(4)]
                for i in range(5):
                    assert c.post("/fhir/Observation", json=contract_hours(
                        tag, pid, 20 + i, f"20{10 + i}-01-01")).status_code == 201
            return sids

        sids = write()
        done = {"a": 0, "b": 0}

        def runner(name: str) -> None:
            async def loop() -> None:
                rt = build_runtime(shared)
                try:
                    for _ in range(400):
                        done[name] += await deliver_once(rt)
                        if all(sum(len(r.numbers) for r in box.of(s, "event-notification")) >= 5
                               for s in sids):
                            return
                        await asyncio.sleep(0.01)
                finally:
                    await rt.close()
            asyncio.run(loop())

        threads = [threading.Thread(target=runner, args=(n,)) for n in done]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for sid in sids:
            numbers = [n for r in box.of(sid, "event-notification") for n in r.numbers]
            assert numbers == [1, 2, 3, 4, 5], (sid, numbers)  # once each, in order
            assert box.max_in_flight[f"{settings.base_url.rstrip('/')}/Subscription/{sid}"] == 1
        assert done["a"] and done["b"], done  # both instances did part of the work

