"""The Subscription resource's life cycle: create, read, update, delete, each for its owner
(and the operator) only; another caller is answered 404 as for an id that does not exist.

The resource is kept in the `subscription` table, not among the patients' resources: it is
the caller's own configuration, with delivery state the server changes (`status`), and it
must never be found through a search, an include or a history of someone else.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from ..access.principal import Principal
from ..fhir import dates
from ..fhir.outcome import FhirError, not_found
from ..runtime import Runtime
from ..store import subscriptions as rows
from .owner import is_operator, owner_key, owner_record
from .spec import PROFILE, Spec, _ext_value, read_spec, resource_object


def stored_spec(content: str) -> Spec:
    """The spec of a stored (already checked) Subscription."""
    from .spec import CONTENTS, DEFAULT_MAX_COUNT, DEFAULT_TIMEOUT, HEARTBEAT, MAX_COUNT, PAYLOAD, TIMEOUT

    r = orjson.loads(content)
    channel = r.get("channel") or {}
    content_code = _ext_value(channel.get("_payload"), PAYLOAD) or "id-only"
    return Spec(str(r.get("criteria")), {}, str(channel.get("endpoint")),
                tuple(channel.get("header") or ()),
                content_code if content_code in CONTENTS else "id-only",
                _ext_value(channel, HEARTBEAT), _ext_value(channel, TIMEOUT) or DEFAULT_TIMEOUT,
                _ext_value(channel, MAX_COUNT) or DEFAULT_MAX_COUNT, str(r.get("status")))


def render(row: Any, base_url: str) -> dict[str, Any]:
    """The Subscription as served: its content with the server's status, meta and error."""
    resource: dict[str, Any] = orjson.loads(row["content"])
    resource["id"] = row["id"]
    resource["status"] = row["status"]
    meta = dict(resource.get("meta") or {})
    meta.update(versionId=str(row["version_id"]), lastUpdated=dates.to_instant(row["last_updated"]))
    profiles = list(meta.get("profile") or [])
    if PROFILE not in profiles:
        profiles.append(PROFILE)
    meta["profile"] = profiles
    resource["meta"] = meta
    if row["status"] == "error" and row["last_error"]:
        resource["error"] = row["last_error"]
    else:
        resource.pop("error", None)
    return resource


def _content(resource: dict[str, Any], spec: Spec) -> str:
    kept = {k: v for k, v in resource.items() if k not in ("meta", "id", "error")}
    kept["status"] = spec.status
    return orjson.dumps(kept).decode()


async def owned(conn: AsyncConnection, principal: Principal, sid: str, lock: bool = False) -> Any:
    """The caller's subscription by id; 404 when there is none or it is someone else's."""
    row = await rows.get(conn, sid, lock=lock)
    if row is None or not (is_operator(principal) or row["owner_key"] == owner_key(principal)):
        raise not_found(f"Subscription/{sid} is not known")
    return row


def _requested(spec: Spec) -> Spec:
    """A client asks for `requested` (or `off`); `active` and `error` are the server's to set."""
    return replace(spec, status="off" if spec.status == "off" else "requested")


async def create(rt: Runtime, conn: AsyncConnection, principal: Principal,
                 resource: dict[str, Any]) -> Any:
    spec = _requested(read_spec(resource, rt.topics, rt.parser))
    now = dates.utcnow()
    sid = str(uuid.uuid4())
    await rows.insert_subscription(conn, {
        "id": sid, "owner_key": owner_key(principal), "owner": owner_record(principal),
        "topic": spec.topic, "status": spec.status, "content": _content(resource, spec),
        "version_id": 1, "last_updated": now, "events_count": 0, "delivered_through": 0,
        "attempts": 0, "next_attempt_at": now, "heartbeat_due_at": None, "lease_until": None,
        "lease_owner": None, "last_error": None})
    return await rows.get(conn, sid)


async def update(rt: Runtime, conn: AsyncConnection, principal: Principal, sid: str,
                 resource: dict[str, Any], if_match: int | None) -> Any:
    """Replace the spec. A changed endpoint, or a client asking for `requested` again (after
    `error`), is handshaken anew; events not yet delivered stay queued."""
    resource = resource_object(resource)
    if resource.get("id") not in (None, sid):
        raise FhirError(400, "invalid", f"The body's id '{resource.get('id')}' is not {sid}",
                        expression=["Subscription.id"])
    row = await owned(conn, principal, sid, lock=True)
    if if_match is not None and if_match != row["version_id"]:
        raise FhirError(412, "conflict", f"Subscription/{sid} is at version {row['version_id']}")
    spec = read_spec(resource, rt.topics, rt.parser)
    old = stored_spec(row["content"])
    if spec.status == "off":
        status = "off"
    elif spec.endpoint != old.endpoint or spec.status == "requested" or row["status"] in (
            "off", "error") or spec.topic != old.topic:
        status = "requested"
    else:
        status = row["status"]
    spec = replace(spec, status=status)
    values: dict[str, Any] = {
        "topic": spec.topic, "status": status, "content": _content(resource, spec),
        "version_id": row["version_id"] + 1, "last_updated": dates.utcnow()}
    if status == "requested":
        values.update(attempts=0, next_attempt_at=dates.utcnow(), last_error=None)
    await rows.change(conn, sid, values)
    return await rows.get(conn, sid)


async def delete(conn: AsyncConnection, principal: Principal, sid: str) -> None:
    """Gone for good, with its undelivered events."""
    await owned(conn, principal, sid, lock=True)
    await rows.remove(conn, sid)
