"""Notification Bundles as the Backport IG specifies them for R4: a `history` Bundle whose
first entry is the SubscriptionStatus (a `Parameters` with the backport-subscription-status-r4
profile), then, for `id-only` and `full-resource`, one entry per event's focus.

Every focus is read with the owner's access as it is now (`vread` through a store opened with
the owner's policy): what they may no longer see is left out, not even its id; the audit trail
of that store records, per patient, what left the server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..fhir import dates
from ..fhir.outcome import FhirError
from ..store.records import StoredResource
from ..store.repository import ResourceStore
from ..store.subscriptions import EventRow

STATUS_PROFILE = ("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                  "backport-subscription-status-r4")
NOTIFICATION_PROFILE = ("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                        "backport-subscription-notification-r4")


@dataclass(frozen=True)
class Shown:
    """An event as it is told: its focus when the owner may see it now."""

    event: EventRow
    focus: StoredResource | None


async def show(store: ResourceStore, events: list[EventRow]) -> list[Shown]:
    """Each event with its focus version, read with the store's (the owner's) access."""
    out = []
    for e in events:
        focus: StoredResource | None
        try:
            focus = await store.vread(e.focus_type, e.focus_id, str(e.focus_version))
        except FhirError:
            focus = None  # no longer visible to the owner (or deleted since)
        out.append(Shown(e, focus))
    return out


def status_parameters(base: str, sid: str, topic: str, status: str, kind: str, count: int,
                      shown: list[Shown] = (), error: str | None = None) -> dict[str, Any]:  # type: ignore[assignment]
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sid}"}},
        {"name": "topic", "valueCanonical": topic},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(count)},
    ]
    for s in shown:
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(s.event.number)},
            {"name": "timestamp", "valueInstant": dates.to_instant(s.event.occurred_at)}]
        if s.focus is not None:
            part.append({"name": "focus", "valueReference": {
                "reference": f"{base}/{s.focus.resource_type}/{s.focus.id}"}})
        params.append({"name": "notification-event", "part": part})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()),
            "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def bundle(base: str, sid: str, status: dict[str, Any], shown: list[Shown], content: str,
           bundle_type: str = "history") -> dict[str, Any]:
    """The notification (or `$events` answer): the status first, then the foci."""
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{status['id']}", "resource": status,
        "request": {"method": "GET", "url": f"{base}/Subscription/{sid}/$status"},
        "response": {"status": "200"}}]
    if content != "empty":
        for s in shown:
            if s.focus is None:
                continue
            f = s.focus
            entry: dict[str, Any] = {"fullUrl": f"{base}/{f.resource_type}/{f.id}"}
            if content == "full-resource":
                entry["resource"] = f.json()
            method = "POST" if s.event.interaction == "create" else "PUT"
            entry["request"] = {"method": method, "url": f.resource_type if method == "POST"
                                else f"{f.resource_type}/{f.id}"}
            entry["response"] = {"status": "201" if method == "POST" else "200",
                                 "etag": f'W/"{f.version_id}"',
                                 "lastModified": dates.to_instant(f.last_updated)}
            entries.append(entry)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"profile": [NOTIFICATION_PROFILE]} if bundle_type == "history" else {},
            "type": bundle_type, "timestamp": dates.to_instant(dates.utcnow()),
            "entry": entries}
