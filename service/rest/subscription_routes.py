"""HTTP routes of Subscription (R4 Subscriptions Backport IG): create, read, search, update,
delete, `$status` and `$events`, for the subscription's owner and the operator only.

Registered before the operation and generic resource routes: a Subscription is never stored
among (or found through) the patients' resources (`service.subscriptions.resource`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from ..access.dependencies import AccessDep, PrincipalDep
from ..fhir import dates
from ..fhir.digits import is_digits
from ..fhir.outcome import FhirError, bad_request
from ..store import subscriptions as rows
from ..subscriptions import notification, resource
from ..subscriptions.owner import is_operator, owner_key
from ..subscriptions.resource import stored_spec
from .deps import RuntimeDep
from .negotiation import check_accept, fhir_response, read_body

router = APIRouter(prefix="/fhir/Subscription", dependencies=[Depends(check_accept)],
                   tags=["subscriptions"])
SubscriptionId = Annotated[str, Path(description="Logical id of a Subscription",
                                     pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object",
                                         "description": "A Subscription (Backport IG R4 profile)"}}}}}
MAX_EVENTS = 100


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    digits = value.strip().removeprefix("W/").strip('"')
    if not is_digits(digits):
        raise bad_request(f"If-Match must be a version ETag like W/\"3\", not '{value}'")
    return int(digits)


def _answer(request: Request, rt: RuntimeDep, row: Any, status: int = 200) -> Response:
    body = resource.render(row, rt.base_url)
    headers = {"ETag": f'W/"{row["version_id"]}"',
               "Last-Modified": dates.to_http_date(row["last_updated"])}
    if status == 201:
        headers["Location"] = f"{rt.base_url}/Subscription/{row['id']}/_history/{row['version_id']}"
    return fhir_response(request, status, body, headers=headers)


@router.post("", summary="Create a Subscription", openapi_extra=BODY)
async def create(request: Request, rt: RuntimeDep, principal: PrincipalDep,
                 access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes)
    access.start("create", None, None)
    async with rt.store(access, write=True) as store:
        access.check_type("Subscription", "create")
        row = await resource.create(rt, store.conn, principal, body)
    return _answer(request, rt, row, 201)


@router.get("", summary="The caller's Subscriptions")
async def search(request: Request, rt: RuntimeDep, principal: PrincipalDep,
                 access: AccessDep) -> Response:
    access.start("search-type", None, None)
    async with rt.store(access) as store:
        access.check_type("Subscription", "search")
        found = await rows.list_owned(store.conn, None if is_operator(principal)
                                      else owner_key(principal), rt.settings.max_page_size)
    return fhir_response(request, 200, {
        "resourceType": "Bundle", "type": "searchset", "total": len(found),
        "link": [{"relation": "self", "url": f"{rt.base_url}/Subscription"}],
        "entry": [{"fullUrl": f"{rt.base_url}/Subscription/{r['id']}",
                   "resource": resource.render(r, rt.base_url), "search": {"mode": "match"}}
                  for r in found]})


@router.get("/{id}", summary="Read a Subscription")
async def read(request: Request, id: SubscriptionId, rt: RuntimeDep, principal: PrincipalDep,
               access: AccessDep) -> Response:
    access.start("read", None, None)
    async with rt.store(access) as store:
        access.check_type("Subscription", "read")
        row = await resource.owned(store.conn, principal, id)
    return _answer(request, rt, row)


@router.put("/{id}", summary="Update a Subscription", openapi_extra=BODY)
async def update(request: Request, id: SubscriptionId, rt: RuntimeDep, principal: PrincipalDep,
                 access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes)
    access.start("update", None, None)
    async with rt.store(access, write=True) as store:
        access.check_type("Subscription", "update")
        row = await resource.update(rt, store.conn, principal, id, body, _if_match(request))
    return _answer(request, rt, row)


@router.delete("/{id}", summary="Delete a Subscription (and its undelivered events)")
async def delete(request: Request, id: SubscriptionId, rt: RuntimeDep, principal: PrincipalDep,
                 access: AccessDep) -> Response:
    access.start("delete", None, None)
    async with rt.store(access, write=True) as store:
        access.check_type("Subscription", "delete")
        await resource.delete(store.conn, principal, id)
    return fhir_response(request, 204)


@router.get("/{id}/$status", summary="Subscription status (Backport IG $status)")
@router.post("/{id}/$status", summary="Subscription status (Backport IG $status)",
             operation_id="subscription_status_post")
async def status(request: Request, id: SubscriptionId, rt: RuntimeDep, principal: PrincipalDep,
                 access: AccessDep) -> Response:
    access.start("operation", "$status", None)
    async with rt.store(access) as store:
        access.check_type("Subscription", "read")
        row = await resource.owned(store.conn, principal, id)
    spec = stored_spec(row["content"])
    params = notification.status_parameters(
        rt.base_url, id, spec.topic, row["status"], "query-status", row["events_count"],
        error=row["last_error"] if row["status"] == "error" else None)
    return fhir_response(request, 200, {
        "resourceType": "Bundle", "type": "searchset", "total": 1,
        "entry": [{"fullUrl": f"urn:uuid:{params['id']}", "resource": params,
                   "search": {"mode": "match"}}]})


def _number(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not is_digits(value):
        raise FhirError(400, "invalid", f"{name} must be an event number", expression=[name])
    return int(value)


@router.get("/{id}/$events", summary="Replay a Subscription's events (Backport IG $events)")
@router.post("/{id}/$events", summary="Replay a Subscription's events (Backport IG $events)",
             operation_id="subscription_events_post")
async def events(request: Request, id: SubscriptionId, rt: RuntimeDep, principal: PrincipalDep,
                 access: AccessDep) -> Response:
    """Events by number, told with the caller's access as it is now (what they may no longer
    see is left out, not even its id); `content` as the subscription's payload by default."""
    since = _number(request, "eventsSinceNumber") or 1
    until = _number(request, "eventsUntilNumber")
    access.start("operation", f"Subscription/{id}/$events", None)
    async with rt.store(access, write=True) as store:
        access.check_type("Subscription", "read")
        row = await resource.owned(store.conn, principal, id)
        spec = stored_spec(row["content"])
        content = request.query_params.get("content") or spec.content
        if content not in ("empty", "id-only", "full-resource"):
            raise FhirError(400, "invalid", "content must be empty, id-only or full-resource",
                            expression=["content"])
        found = await rows.events(store.conn, id, since, until, MAX_EVENTS)
        shown = await notification.show(store, found) if content != "empty" else [
            notification.Shown(e, None) for e in found]
    params = notification.status_parameters(rt.base_url, id, spec.topic, row["status"],
                                            "query-event", row["events_count"], shown)
    return fhir_response(request, 200, notification.bundle(rt.base_url, id, params, shown,
                                                           content, "history"))
