"""Transaction and batch Bundles (R4 3.1.0.11).

A transaction runs in one database transaction: every entry succeeds or nothing is written.
Before any write, `urn:uuid:` full URLs get their server ids and conditional references
(`Patient?identifier=...`) are resolved, then every reference in every entry is rewritten.
Entries run in the order the specification prescribes: DELETE, POST, PUT/PATCH, GET.
A batch runs each entry in its own transaction and reports each outcome separately.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

from ..fhir import dates
from ..fhir.outcome import FhirError, bad_request, operation_outcome
from ..runtime import Runtime
from ..store.access import AccessPolicy
from ..store.repository import ResourceStore
from .dispatch import dispatch, parse_url
from .interactions import Interactions
from .messages import FhirRequest, FhirResponse

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


def _entries(bundle: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise bad_request("Bundle.entry must be an array", "Bundle.entry")
    if len(entries) > limit:
        raise FhirError(413, "too-long", f"A Bundle may hold at most {limit} entries", "Bundle.entry")
    for i, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise bad_request("Every entry needs request.method and request.url",
                              f"Bundle.entry[{i}].request")
        if request["method"] not in ORDER:
            raise bad_request(f"Unsupported method '{request['method']}'",
                              f"Bundle.entry[{i}].request.method")
    return entries


def _request(rt: Runtime, entry: dict[str, Any], prefer: str | None) -> FhirRequest:
    r = entry["request"]
    req = parse_url(r["method"], r["url"], rt.base_url)
    headers = {"if-match": r.get("ifMatch"), "if-none-match": r.get("ifNoneMatch"),
               "if-none-exist": r.get("ifNoneExist"), "if-modified-since": r.get("ifModifiedSince"),
               "prefer": prefer}
    req.headers = {k: v for k, v in headers.items() if v}
    req.body = entry.get("resource")
    return req


def _response_entry(rt: Runtime, resp: FhirResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"status": STATUS_TEXT.get(resp.status, str(resp.status))}
    if "Location" in resp.headers:
        out["location"] = resp.headers["Location"].removeprefix(rt.base_url + "/")
    if "ETag" in resp.headers:
        out["etag"] = resp.headers["ETag"]
    if "Last-Modified" in resp.headers:
        modified = dates.from_http_date(resp.headers["Last-Modified"])
        if modified:
            out["lastModified"] = dates.to_instant(modified)
    entry: dict[str, Any] = {"response": out}
    payload = resp.payload()
    if payload is not None:
        if payload.get("resourceType") == "OperationOutcome" and resp.status >= 400:
            out["outcome"] = payload
        else:
            entry["resource"] = payload
            if payload.get("id") and payload.get("resourceType") not in ("Bundle",):
                entry["fullUrl"] = f"{rt.base_url}/{payload['resourceType']}/{payload['id']}"
    return entry


def _rewrite(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                out[key] = mapping[value]
            else:
                out[key] = _rewrite(value, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite(v, mapping) for v in node]
    return node


def _references(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.add(value)
            else:
                _references(value, found)
    elif isinstance(node, list):
        for v in node:
            _references(v, found)
    return found


class BundleProcessor:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.ix = Interactions(runtime)

    async def process(self, bundle: Any, access: AccessPolicy, prefer: str | None) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise bad_request("POST to the base URL takes a Bundle", "resourceType")
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise bad_request("Bundle.type must be transaction or batch", "Bundle.type")
        entries = _entries(bundle, self.rt.settings.max_bundle_entries)
        if kind == "transaction":
            async with self.rt.store(access, write=True) as store:
                responses = await self._transaction(store, entries, prefer)
        else:
            responses = await self._batch(entries, access, prefer)
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": f"{kind}-response",
            "entry": responses,
        }

    async def _transaction(self, store: ResourceStore, entries: list[dict[str, Any]],
                           prefer: str | None) -> list[dict[str, Any]]:
        requests = [_request(self.rt, e, prefer) for e in entries]
        mapping = await self._identities(store, entries, requests)
        for i, req in enumerate(requests):
            if req.body is not None:
                req.body = _rewrite(req.body, mapping)
                unresolved = [r for r in _references(req.body, set()) if r.startswith("urn:uuid:")]
                if unresolved:
                    raise bad_request(f"Reference '{unresolved[0]}' matches no entry's fullUrl",
                                      f"Bundle.entry[{i}].resource")
        responses: list[dict[str, Any] | None] = [None] * len(entries)
        order = sorted(range(len(entries)), key=lambda i: ORDER[requests[i].method])
        for i in order:
            try:
                resp = await dispatch(self.ix, store, requests[i])
            except FhirError as exc:
                for issue in exc.issues:
                    issue.expression = [f"Bundle.entry[{i}]" + (f".resource.{e.split('.', 1)[1]}"
                                        if "." in e else "") for e in issue.expression] \
                        or [f"Bundle.entry[{i}]"]
                    issue.diagnostics = f"Bundle.entry[{i}]: {issue.diagnostics}"
                raise
            responses[i] = _response_entry(self.rt, resp)
        return [r for r in responses if r is not None]

    async def _identities(self, store: ResourceStore, entries: list[dict[str, Any]],
                          requests: list[FhirRequest]) -> dict[str, str]:
        """Map every fullUrl and conditional reference to the `Type/id` it stands for."""
        mapping: dict[str, str] = {}
        for i, (entry, req) in enumerate(zip(entries, requests, strict=True)):
            full_url = entry.get("fullUrl")
            if req.method == "POST" and req.resource_type:
                target_id = None
                condition = req.header("if-none-exist")
                if condition:
                    query = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
                    found = await store.count_matches(self.ix.criteria(req.resource_type, query))
                    if len(found) > 1:
                        raise FhirError(412, "multiple-matches",
                                        f"ifNoneExist matches more than one resource",
                                        f"Bundle.entry[{i}].request.ifNoneExist")
                    if found:
                        target_id = found[0].id
                if target_id is None:
                    req.id = str(uuid.uuid4())
                    target_id = req.id
                if full_url:
                    mapping[full_url] = f"{req.resource_type}/{target_id}"
            elif req.method == "PUT" and req.resource_type and req.id and full_url:
                mapping[full_url] = f"{req.resource_type}/{req.id}"
        for i, req in enumerate(requests):
            if req.body is None:
                continue
            for ref in _references(req.body, set()):
                if "?" in ref and ref not in mapping and not ref.startswith(("urn:", "http")):
                    rtype, _, query = ref.partition("?")
                    found = await store.count_matches(
                        self.ix.criteria(rtype, parse_qsl(query, keep_blank_values=True)))
                    if len(found) != 1:
                        raise FhirError(412 if found else 400,
                                        "multiple-matches" if found else "not-found",
                                        f"Conditional reference '{ref}' matches {len(found)} resources",
                                        f"Bundle.entry[{i}].resource")
                    mapping[ref] = found[0].ref
        return mapping

    async def _batch(self, entries: list[dict[str, Any]], access: AccessPolicy,
                     prefer: str | None) -> list[dict[str, Any]]:
        out = []
        for i, entry in enumerate(entries):
            try:
                req = _request(self.rt, entry, prefer)
                write = req.method not in ("GET", "HEAD")
                async with self.rt.store(access, write=write) as store:
                    resp = await dispatch(self.ix, store, req)
                out.append(_response_entry(self.rt, resp))
            except FhirError as exc:
                for issue in exc.issues:
                    issue.expression = issue.expression or [f"Bundle.entry[{i}]"]
                out.append({"response": {"status": str(exc.status),
                                         "outcome": operation_outcome(exc.issues)}})
        return out



