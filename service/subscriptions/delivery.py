"""The delivery worker (a task of `service.worker`): handshakes, event notifications and
heartbeats by rest-hook, from the durable rows only.

One pass leases the subscriptions with something due (`store.subscriptions.claim_due`: row
locks, `SKIP LOCKED` on PostgreSQL, then a lease so no other instance takes them while the
HTTP request runs), sends one message each, and records the outcome with the lease. Events go
in event-number order: a notification carries the oldest unacknowledged events (at most the
subscription's max count), and the next one is sent only after a 2xx. A process killed
mid-delivery leaves its lease to run out; the events are sent again (at least once). After
`subscription_max_attempts` failures in a row the status becomes `error`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
import orjson

from ..fhir import dates
from ..runtime import Runtime
from ..store import subscriptions as rows
from ..store.access import SystemAccess
from . import notification
from .owner import owner_policy
from .resource import stored_spec
from .spec import MAX_TIMEOUT

log = logging.getLogger("pgo_work.subscriptions")
LEASE_MARGIN = 15
"""Seconds a lease outlives the request's timeout: time to record the outcome."""
MAX_BACKOFF = 600.0


async def deliver_once(rt: Runtime) -> int:
    """One pass; the number of messages sent (or attempted)."""
    lease_owner = uuid.uuid4().hex
    now = dates.utcnow()
    async with rt.store(SystemAccess(), write=True) as store:
        claimed = await rows.claim_due(store.conn, now, now + timedelta(
            seconds=MAX_TIMEOUT + LEASE_MARGIN), lease_owner, rt.settings.subscription_claim_batch)
    for sub in claimed:
        try:
            await _deliver(rt, sub, lease_owner)
        except Exception:
            log.exception("delivery for Subscription/%s failed", sub["id"])
            await _record(rt, sub, lease_owner, ok=False, error="internal error")
    return len(claimed)


async def _deliver(rt: Runtime, sub: Any, lease_owner: str) -> None:
    spec = stored_spec(sub["content"])
    now = dates.utcnow()
    base = rt.base_url
    if sub["status"] == "requested":
        body = notification.bundle(base, sub["id"], notification.status_parameters(
            base, sub["id"], spec.topic, "requested", "handshake", sub["events_count"]), [],
            spec.content)
        ok, error = await _post(spec, body)
        await _record(rt, sub, lease_owner, ok=ok, error=error, handshake=True)
        return
    if sub["events_count"] > sub["delivered_through"]:
        policy = await owner_policy(sub["owner"], rt)
        policy.start("read", f"Subscription/{sub['id']} notification (rest-hook)", None)
        async with rt.store(policy, write=True) as store:
            events = await rows.events(store.conn, sub["id"], sub["delivered_through"] + 1,
                                       None, spec.max_count)
            # `empty` tells only that something happened (no focus, not even its id): no
            # patient's data leaves, so there is nothing to read or audit.
            shown = (await notification.show(store, events) if spec.content != "empty"
                     else [notification.Shown(e, None) for e in events])
            body = notification.bundle(base, sub["id"], notification.status_parameters(
                base, sub["id"], spec.topic, "active", "event-notification",
                sub["events_count"], shown), shown, spec.content)
        # The audit committed above: the notification is on the record before it is sent.
        ok, error = await _post(spec, body)
        await _record(rt, sub, lease_owner, ok=ok, error=error,
                      through=events[-1].number if events and ok else None)
        return
    if sub["heartbeat_due_at"] is not None and sub["heartbeat_due_at"] <= now:
        body = notification.bundle(base, sub["id"], notification.status_parameters(
            base, sub["id"], spec.topic, "active", "heartbeat", sub["events_count"]), [],
            spec.content)
        ok, error = await _post(spec, body)
        await _record(rt, sub, lease_owner, ok=ok, error=error)
        return
    await _record(rt, sub, lease_owner, ok=True, error=None, sent=False)


async def _post(spec: Any, body: dict[str, Any]) -> tuple[bool, str | None]:
    headers = {"Content-Type": "application/fhir+json"}
    for h in spec.headers:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    try:
        async with httpx.AsyncClient(timeout=spec.timeout_seconds,
                                     follow_redirects=False) as client:
            resp = await client.post(spec.endpoint, content=orjson.dumps(body), headers=headers)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return True, None
    return False, f"The endpoint answered {resp.status_code}"


async def _record(rt: Runtime, sub: Any, lease_owner: str, ok: bool, error: str | None,
                  handshake: bool = False, through: int | None = None,
                  sent: bool = True) -> None:
    """The outcome, with the lease given back."""
    spec = stored_spec(sub["content"])
    now = dates.utcnow()
    values: dict[str, Any] = {}
    if ok:
        values.update(attempts=0, last_error=None, next_attempt_at=now)
        if sent:
            values["heartbeat_due_at"] = (now + timedelta(seconds=spec.heartbeat_seconds)
                                          if spec.heartbeat_seconds else None)
        if handshake:
            values["status"] = "active"
        if through is not None:
            values["delivered_through"] = through
    else:
        attempts = int(sub["attempts"]) + 1
        delay = min(MAX_BACKOFF, rt.settings.subscription_retry_seconds * 2 ** (attempts - 1))
        values.update(attempts=attempts, last_error=error,
                      next_attempt_at=now + timedelta(seconds=delay))
        if handshake or attempts >= rt.settings.subscription_max_attempts:
            values["status"] = "error"
        log.warning("delivery for Subscription/%s failed (%s)", sub["id"], error)
    async with rt.store(SystemAccess(), write=True) as store:
        await rows.release(store.conn, sub["id"], lease_owner, values)
