"""Bundles for search results (searchset) and history, with self/next/prev links."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from ..fhir import dates
from ..store.records import HistoryPage, SearchPage, StoredResource
from ..store.search.request import SearchRequest
from .messages import FhirRequest
from .shaping import shape


def _url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{base}/{path}" + (f"?{query}" if query else "") if path else \
        f"{base}" + (f"?{query}" if query else "")


def _entry(base: str, stored: StoredResource, mode: str, sreq: SearchRequest) -> dict[str, Any]:
    resource = stored.json()
    # _elements applies to matches only; included resources come whole (R4 3.1.1.5.9).
    if sreq.summary or (sreq.elements and mode == "match"):
        resource = shape(resource, sreq.summary, sreq.elements if mode == "match" else None)
    return {
        "fullUrl": f"{base}/{stored.resource_type}/{stored.id}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _ignored(ignored: list[tuple[str, str]]) -> dict[str, Any]:
    """Under `Prefer: handling=lenient`, say which parameters were not used and why (R4
    3.1.1.3.3): an OperationOutcome entry with search mode `outcome`."""
    issues = [{"severity": "warning", "code": "not-supported",
               "diagnostics": f"Parameter '{name}' was ignored: {reason}", "expression": [name]}
              for name, reason in ignored]
    return {"resource": {"resourceType": "OperationOutcome", "issue": issues},
            "search": {"mode": "outcome"}}


def build(base: str, resource_type: str | None, sreq: SearchRequest, page: SearchPage) -> dict[str, Any]:
    path = resource_type or ""
    echo = list(sreq.echo)
    here = [*echo, ("_cursor", sreq.cursor)] if sreq.cursor else echo
    links = [{"relation": "self", "url": _url(base, path, here)}]
    if page.next_cursor:
        links.append({"relation": "next",
                      "url": _url(base, path, [*echo, ("_cursor", page.next_cursor)])})
    if page.prev_cursor:
        links.append({"relation": "previous",
                      "url": _url(base, path, [*echo, ("_cursor", page.prev_cursor)])})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": dates.to_instant(dates.utcnow())},
        "type": "searchset",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = [_entry(base, m, "match", sreq) for m in page.matches]
    entries += [_entry(base, i, "include", sreq) for i in page.included]
    if sreq.ignored:
        entries.append(_ignored(sreq.ignored))
    if entries:
        bundle["entry"] = entries
    return bundle


def history(base: str, req: FhirRequest, page: HistoryPage) -> dict[str, Any]:
    parts = [p for p in (req.resource_type, req.id) if p]
    path = "/".join([*parts, "_history"])
    echo = [(k, v) for k, v in req.query if k not in ("_cursor", "_format", "_pretty")]
    links = [{"relation": "self", "url": _url(base, path, echo)}]
    if page.next_cursor:
        links.append({"relation": "next",
                      "url": _url(base, path, [*echo, ("_cursor", page.next_cursor)])})
    entries = []
    for v in page.entries:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{v.resource_type}/{v.id}"}
        if v.content is not None:
            entry["resource"] = v.json()
        method = v.method or "PUT"
        url = f"{v.resource_type}/{v.id}" if method != "POST" else v.resource_type
        entry["request"] = {"method": method, "url": url}
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[method]
        entry["response"] = {"status": status, "etag": f'W/"{v.version_id}"',
                             "lastModified": dates.to_instant(v.last_updated)}
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": dates.to_instant(dates.utcnow())},
        "type": "history",
        "total": page.total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle
