"""Transaction and batch Bundles (R4 3.1.0.11).

A transaction runs in one database transaction: every entry succeeds or nothing is written.
Entries run in the order the specification prescribes: DELETE, POST, PUT/PATCH, GET. After the
deletes and before any other write, `urn:uuid:` full URLs get their server ids and conditional
references (`Patient?identifier=...`) are resolved, then every reference in every entry is
rewritten. PATCH entries carry a JSON Patch as a Binary.
A batch runs each entry in its own transaction and reports each outcome separately.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson

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


def _request(rt: Runtime, entry: dict[str, Any], prefer: str | None, index: int) -> FhirRequest:
    r = entry["request"]
    req = parse_url(r["method"], r["url"], rt.base_url)
    headers = {"if-match": r.get("ifMatch"), "if-none-match": r.get("ifNoneMatch"),
               "if-none-exist": r.get("ifNoneExist"), "if-modified-since": r.get("ifModifiedSince"),
               "prefer": prefer}
    req.headers = {k: v for k, v in headers.items() if v}
    req.body = entry.get("resource")
    if req.method == "PATCH":
        req.body = _json_patch(req.body, index)
    return req


def _json_patch(resource: Any, index: int) -> Any:
    """The operations of a PATCH entry, which carries a JSON Patch as a Binary (R4 3.1.0.11)."""
    where = f"Bundle.entry[{index}].resource"
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise bad_request("A PATCH entry carries its JSON Patch as a Binary resource", where)
    if resource.get("contentType") != "application/json-patch+json":
        raise FhirError(415, "not-supported",
                        "Only JSON Patch (application/json-patch+json) is supported",
                        f"{where}.contentType")
    try:
        return orjson.loads(base64.b64decode(resource.get("data") or "", validate=True))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise bad_request(f"Binary.data is not base64-encoded JSON: {exc}", f"{where}.data") from exc


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


def _blame(exc: FhirError, i: int) -> FhirError:
    """`exc` with every issue located in entry `i` of the Bundle."""
    for issue in exc.issues:
        located = []
        for e in issue.expression:
            if e.startswith("Bundle."):
                located.append(e)
            elif e.startswith("request."):
                located.append(f"Bundle.entry[{i}].{e}")
            else:
                located.append(f"Bundle.entry[{i}]" + (f".resource.{e.split('.', 1)[1]}"
                                                        if "." in e else ""))
        issue.expression = located or [f"Bundle.entry[{i}]"]
        if not issue.diagnostics.startswith("Bundle.entry["):
            issue.diagnostics = f"Bundle.entry[{i}]: {issue.diagnostics}"
    return exc


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


def _conditions(requests: list[FhirRequest]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(type, criteria) of every conditional create, update and delete among `requests`."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for req in requests:
        if not req.resource_type or req.id:
            continue
        condition = req.header("if-none-exist") if req.method == "POST" else None
        if condition:
            out.append((req.resource_type,
                        parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)))
        elif req.method in ("PUT", "DELETE") and req.query:
            out.append((req.resource_type, req.query))
    return out


class BundleProcessor:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.ix = Interactions(runtime)

    async def process(self, bundle: Any, access: AccessPolicy, prefer: str | None,
                      unchanged: set[str] | None = None) -> dict[str, Any]:
        """Run a transaction or batch. With `unchanged` (the bulk importer), a transaction's
        updates that would store the same content again write nothing, and their `Type/id`
        are added to it (`ResourceStore.keep_unchanged`)."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise bad_request("POST to the base URL takes a Bundle", "resourceType")
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise bad_request("Bundle.type must be transaction or batch", "Bundle.type")
        entries = _entries(bundle, self.rt.settings.max_bundle_entries)
        if kind == "transaction":
            access.start("transaction")
            async with self.rt.store(access, write=True) as store:
                store.keep_unchanged = unchanged is not None
                responses = await self._transaction(store, entries, prefer)
                if unchanged is not None:
                    unchanged.update(store.unchanged)
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
        requests = [_request(self.rt, e, prefer, i) for i, e in enumerate(entries)]
        responses: list[dict[str, Any] | None] = [None] * len(entries)
        # Every conditional entry's lock before any entry runs, in one sorted order, so two
        # transactions with overlapping conditions cannot deadlock (`service.store.locks`).
        await store.lock_conditions(_conditions(requests))
        # The keys of the resources the creates will add, in one round trip for them all.
        await store.reserve(sum(1 for r in requests if r.method == "POST"))
        # Within each method, resources that belong to the record of what they reference (a
        # Provenance: the compartment definition's inheritance) come after the rest, so they are
        # written when what they are about already is (R4 leaves the order within a method open).
        inheriting = self.rt.registry.compartment_inherit
        order = sorted(range(len(entries)), key=lambda i: (
            ORDER[requests[i].method], requests[i].resource_type in inheriting))
        # Deletes run first (R4 3.1.0.11.2), and before identities are resolved: a conditional
        # create or reference must see the state the creates will actually run against.
        for i in (i for i in order if requests[i].method == "DELETE"):
            responses[i] = _response_entry(self.rt, await self._entry(store, i, requests[i]))
        mapping, targets = await self._identities(store, entries, requests)
        # Every update by id finds (and locks) its resource in one statement for the Bundle.
        await store.locate_all((r.resource_type, r.id) for r in requests
                               if r.method == "PUT" and r.resource_type and r.id)
        for i, req in enumerate(requests):
            if req.body is not None:
                req.body = _rewrite(req.body, mapping)
                unresolved = [r for r in _references(req.body, set()) if r.startswith("urn:uuid:")]
                if unresolved:
                    raise bad_request(f"Reference '{unresolved[0]}' matches no entry's fullUrl",
                                      f"Bundle.entry[{i}].resource")
        for i in (i for i in order if requests[i].method != "DELETE"):
            resp = await self._entry(store, i, requests[i])
            if i in targets and self._located_id(resp) != targets[i]:
                # ifNoneExist now matches a resource an earlier entry created: the references
                # rewritten to this entry's planned id would dangle.
                raise FhirError(409, "conflict",
                                f"Bundle.entry[{i}]: ifNoneExist matches a resource created by "
                                "another entry of this transaction",
                                f"Bundle.entry[{i}].request.ifNoneExist")
            responses[i] = _response_entry(self.rt, resp)
        return [r for r in responses if r is not None]

    async def _entry(self, store: ResourceStore, i: int, req: FhirRequest) -> FhirResponse:
        """Run entry `i`; a failure names the entry in its diagnostics and expressions."""
        try:
            return await dispatch(self.ix, store, req)
        except FhirError as exc:
            raise _blame(exc, i) from None

    def _located_id(self, resp: FhirResponse) -> str | None:
        location = resp.headers.get("Location", "").removeprefix(self.rt.base_url + "/")
        parts = location.split("/")
        return parts[1] if len(parts) > 1 else None

    async def _identities(self, store: ResourceStore, entries: list[dict[str, Any]],
                          requests: list[FhirRequest]) -> tuple[dict[str, str], dict[int, str]]:
        """Map every fullUrl and conditional reference to the `Type/id` it stands for.

        Also returns, per creating or updating entry, the id its references were rewritten to,
        so the transaction can check that the write really lands there. Two entries that
        would change the same resource fail the transaction (R4 3.1.0.11.2).
        """
        mapping: dict[str, str] = {}
        targets: dict[int, str] = {}
        touched: dict[str, int] = {}
        planned: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for i, (entry, req) in enumerate(zip(entries, requests, strict=True)):
            try:
                target = await self._target(store, req, planned)
            except FhirError as exc:
                raise _blame(exc, i) from None
            if target is None or not req.resource_type:
                continue
            ref = f"{req.resource_type}/{target}"
            if ref in touched:
                raise bad_request(f"Bundle.entry[{touched[ref]}] and Bundle.entry[{i}] both change "
                                  f"{ref}; a transaction changes a resource at most once",
                                  f"Bundle.entry[{i}].request")
            touched[ref] = i
            if req.method in ("POST", "PUT"):
                targets[i] = target
                if entry.get("fullUrl"):
                    mapping[entry["fullUrl"]] = ref
        for i, req in enumerate(requests):
            if req.body is None:
                continue
            for ref in _references(req.body, set()):
                if "?" in ref and ref not in mapping and not ref.startswith(("urn:", "http")):
                    rtype, _, criteria = ref.partition("?")
                    try:
                        found = await store.count_matches(
                            self.ix.criteria(rtype, parse_qsl(criteria, keep_blank_values=True)))
                    except FhirError as exc:
                        raise _blame(exc, i) from None
                    if len(found) != 1:
                        raise FhirError(412 if found else 400,
                                        "multiple-matches" if found else "not-found",
                                        f"Conditional reference '{ref}' matches {len(found)} resources",
                                        f"Bundle.entry[{i}].resource")
                    mapping[ref] = found[0].ref
        return mapping, targets

    async def _target(self, store: ResourceStore, req: FhirRequest,
                      planned: dict[tuple[str, tuple[tuple[str, str], ...]], str]) -> str | None:
        """The id a DELETE/POST/PUT/PATCH entry will write, fixing it now for creates.

        `planned` remembers conditional creates already given an id: a second entry with the
        same condition stands for the same resource (and so overlaps the first).
        """
        rtype = req.resource_type
        if rtype is None or req.method in ("GET", "HEAD"):
            return None
        if req.method == "POST":
            condition = req.header("if-none-exist")
            key = None
            if condition:
                query = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
                key = (rtype, tuple(sorted(query)))
                found = await store.count_matches(self.ix.criteria(rtype, query))
                if len(found) > 1:
                    raise FhirError(412, "multiple-matches",
                                    "ifNoneExist matches more than one resource",
                                    "request.ifNoneExist")
                if found:
                    return found[0].id
                if key in planned:
                    return planned[key]
            req.new_id = str(uuid.uuid4())
            if key is not None:
                planned[key] = req.new_id
            return req.new_id
        if req.id:
            return req.id
        if req.method != "PUT":
            return None  # a conditional delete has run already; a PATCH needs an id anyway
        found = await store.count_matches(self.ix.criteria(rtype, req.query))
        if len(found) > 1:
            raise FhirError(412, "multiple-matches", "The criteria match more than one resource",
                            "request.url")
        if found:
            return found[0].id
        if not isinstance(req.body, dict):
            return None  # the update itself rejects the body
        if req.body.get("id"):
            return str(req.body["id"])
        # No match and no id: a create under an id the server assigns now, not the client.
        req.new_id = str(uuid.uuid4())
        return req.new_id

    async def _batch(self, entries: list[dict[str, Any]], access: AccessPolicy,
                     prefer: str | None) -> list[dict[str, Any]]:
        out = []
        access.start("batch")
        for i, entry in enumerate(entries):
            try:
                req = _request(self.rt, entry, prefer, i)
                write = req.method not in ("GET", "HEAD")
                # Each entry is audited on its own, a search with its query.
                access.start("batch", None if write else str(entry["request"]["url"]),
                             (req.resource_type, req.id) if req.resource_type and req.id else None)
                async with self.rt.store(access, write=write) as store:
                    resp = await dispatch(self.ix, store, req)
                out.append(_response_entry(self.rt, resp))
            except FhirError as exc:
                for issue in exc.issues:
                    issue.expression = issue.expression or [f"Bundle.entry[{i}]"]
                out.append({"response": {"status": str(exc.status),
                                         "outcome": operation_outcome(exc.issues)}})
        return out



