"""Route a relative FHIR URL and method to an interaction (used for Bundle entries)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from ..conformance.structure import is_resource_type
from ..fhir.outcome import bad_request
from ..store.repository import ResourceStore
from .interactions import Interactions
from .messages import FhirRequest, FhirResponse


def parse_url(method: str, url: str, base: str) -> FhirRequest:
    """`Patient/1/_history/2?x=y` (or an absolute URL on our base) as a FhirRequest."""
    if url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise bad_request(f"'{url}' is not a URL on this server")
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qsl(parts.query, keep_blank_values=True)
    req = FhirRequest(method=method.upper(), query=query)
    if not segments:
        return req
    if segments[0] == "_history":
        req.version = "_history"
        return req
    if not is_resource_type(segments[0]):
        raise bad_request(f"Unknown resource type in '{url}'")
    req.resource_type = segments[0]
    if len(segments) >= 2:
        req.id = segments[1] if segments[1] != "_history" else None
        if segments[1] == "_history":
            req.version = "_history"
    if len(segments) >= 3:
        if segments[2] != "_history":
            raise bad_request(f"'{url}' is not a supported URL in a Bundle entry")
        req.version = segments[3] if len(segments) >= 4 else "_history"
    if len(segments) > 4:
        raise bad_request(f"'{url}' is not a supported URL in a Bundle entry")
    return req


async def dispatch(ix: Interactions, store: ResourceStore, req: FhirRequest) -> FhirResponse:
    m = req.method
    history = req.version == "_history"
    if m == "GET" or m == "HEAD":
        if history:
            return await ix.history(store, FhirRequest(m, req.resource_type, req.id, None,
                                                       req.query, req.headers))
        if req.id and req.version:
            return await ix.vread(store, req)
        if req.id:
            return await ix.read(store, req)
        return await ix.search(store, req)
    if history or req.version:
        raise bad_request(f"{m} is not allowed on a history URL")
    if m == "POST" and req.resource_type and not req.id:
        return await ix.create(store, req)
    if m == "PUT" and req.resource_type:
        return await (ix.update(store, req) if req.id else ix.conditional_update(store, req))
    if m == "PATCH" and req.resource_type and req.id:
        return await ix.patch(store, req)
    if m == "DELETE" and req.resource_type:
        return await (ix.delete(store, req) if req.id else ix.conditional_delete(store, req))
    raise bad_request(f"{m} on '{req.resource_type or '/'}' is not supported in a Bundle entry")
