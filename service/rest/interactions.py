"""FHIR interactions as functions of (store, request) -> response (R4 3.1.0).

The same functions serve HTTP routes and transaction/batch entries, so a Bundle entry behaves
exactly like the equivalent single request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import jsonpatch

from ..fhir import dates
from ..fhir.digits import is_digits
from ..fhir.outcome import FhirError, bad_request
from ..runtime import Runtime
from ..store.records import StoredResource
from ..store.repository import ResourceStore
from ..store.search.request import SearchRequest
from . import searchset
from .messages import FhirRequest, FhirResponse
from .shaping import shape


class Interactions:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # -- helpers ------------------------------------------------------------------------
    def location(self, stored: StoredResource) -> str:
        return f"{self.rt.base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"

    def headers(self, stored: StoredResource, with_location: bool = False) -> dict[str, str]:
        out = {
            "ETag": f'W/"{stored.version_id}"',
            "Last-Modified": dates.to_http_date(stored.last_updated),
        }
        if with_location:
            out["Location"] = self.location(stored)
        return out

    def written(self, req: FhirRequest, stored: StoredResource, status: int) -> FhirResponse:
        """Answer a write as `Prefer: return=` asks; the representation by default."""
        headers = self.headers(stored, with_location=True)
        prefer = req.prefer.get("return", "representation")
        if prefer == "minimal":
            return FhirResponse(status, headers=headers)
        if prefer == "OperationOutcome":
            return FhirResponse(status, body={"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational",
                "diagnostics": f"{stored.ref} stored as version {stored.version_id}"}]},
                headers=headers)
        return FhirResponse(status, raw=stored.content, headers=headers)

    async def body(self, store: ResourceStore, req: FhirRequest, resource_type: str) -> dict[str, Any]:
        body = req.body
        if not isinstance(body, dict):
            raise bad_request("The request body must be a FHIR resource (a JSON object)")
        if body.get("resourceType") != resource_type:
            raise bad_request(
                f"resourceType '{body.get('resourceType')}' does not match the URL ({resource_type})",
                "resourceType")
        return await self.rt.check_write_in(store, body)

    def criteria(self, resource_type: str, query: list[tuple[str, str]]) -> SearchRequest:
        if not query:
            raise bad_request("A conditional interaction needs search criteria")
        return self.rt.parser.parse(resource_type, query)

    @staticmethod
    def if_match(req: FhirRequest) -> int | None:
        value = req.header("if-match")
        if value is None:
            return None
        digits = value.strip().removeprefix("W/").strip('"')
        if not is_digits(digits):
            raise bad_request(f"If-Match must be a version ETag like W/\"3\", not '{value}'")
        return int(digits)

    # -- instance level -----------------------------------------------------------------
    async def read(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type and req.id
        stored = await store.read(req.resource_type, req.id)
        headers = self.headers(stored)
        inm = req.header("if-none-match")
        if inm and inm.strip().removeprefix("W/").strip('"') == str(stored.version_id):
            return FhirResponse(304, headers=headers)
        ims = req.header("if-modified-since")
        if ims:
            since = dates.from_http_date(ims)
            if since is not None and stored.last_updated.replace(microsecond=0) <= since:
                return FhirResponse(304, headers=headers)
        return self._shaped(req, stored, headers)

    async def vread(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type and req.id and req.version
        stored = await store.vread(req.resource_type, req.id, req.version)
        return self._shaped(req, stored, self.headers(stored))

    def _shaped(self, req: FhirRequest, stored: StoredResource, headers: dict[str, str]) -> FhirResponse:
        params = dict(req.query)
        summary, elements = params.get("_summary"), params.get("_elements")
        if summary or elements:
            picked = [e.strip() for e in elements.split(",")] if elements else None
            return FhirResponse(200, body=shape(stored.json(), summary, picked), headers=headers)
        return FhirResponse(200, raw=stored.content, headers=headers)

    async def create(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type
        resource = await self.body(store, req, req.resource_type)
        condition = req.header("if-none-exist")
        if condition:
            query = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
            await store.lock_conditions([(req.resource_type, query)])
            found = await store.count_matches(self.criteria(req.resource_type, query))
            if len(found) > 1:
                raise FhirError(412, "multiple-matches",
                                f"If-None-Exist '{condition}' matches more than one resource")
            if found:
                return self.written(req, found[0], 200)
        # In a transaction the id may be assigned up front so urn:uuid references resolve.
        stored = await store.create(resource, req.new_id)
        return self.written(req, stored, 201)

    async def update(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type and req.id
        resource = await self.body(store, req, req.resource_type)
        if resource.get("id") is None:
            raise bad_request("An update must carry the resource id in the body",
                              f"{req.resource_type}.id")
        if resource["id"] != req.id:
            raise bad_request(f"Body id '{resource['id']}' does not match the URL id '{req.id}'",
                              f"{req.resource_type}.id")
        stored, created = await store.update(resource, req.id, self.if_match(req))
        return self.written(req, stored, 201 if created else 200)

    async def conditional_update(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type
        resource = await self.body(store, req, req.resource_type)
        await store.lock_conditions([(req.resource_type, req.query)])
        found = await store.count_matches(self.criteria(req.resource_type, req.query))
        if len(found) > 1:
            raise FhirError(412, "multiple-matches", "The criteria match more than one resource")
        body_id = resource.get("id")
        if found:
            if body_id and body_id != found[0].id:
                raise bad_request(f"Body id '{body_id}' differs from the matched {found[0].ref}",
                                  f"{req.resource_type}.id")
            stored, created = await store.update(resource, found[0].id, self.if_match(req))
        else:
            if body_id and await store.exists(req.resource_type, body_id):
                raise FhirError(409, "conflict",
                                f"{req.resource_type}/{body_id} exists but does not match the criteria")
            # Without a body id the server assigns one (in a transaction: the one planned up
            # front, so references to this entry resolve); a body id is the client's choice.
            stored, created = (await store.update(resource, body_id) if body_id
                               else (await store.create(resource, req.new_id), True))
        return self.written(req, stored, 201 if created else 200)

    async def patch(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type and req.id
        if not isinstance(req.body, list):
            raise bad_request("A JSON Patch body is an array of operations")
        current = await store.read(req.resource_type, req.id)
        expected = self.if_match(req)
        try:
            patched = jsonpatch.apply_patch(current.json(), req.body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise FhirError(422, "processing", f"The patch cannot be applied: {exc}") from exc
        if patched.get("resourceType") != req.resource_type or patched.get("id") != req.id:
            raise FhirError(422, "processing", "A patch may not change resourceType or id")
        resource = await self.rt.check_write_in(store, patched)
        stored, _ = await store.update(resource, req.id,
                                       expected if expected is not None else current.version_id)
        return self.written(req, stored, 200)

    async def delete(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type and req.id
        await store.delete(req.resource_type, req.id, self.if_match(req))
        return FhirResponse(204)

    async def conditional_delete(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        assert req.resource_type
        await store.lock_conditions([(req.resource_type, req.query)])
        found = await store.count_matches(self.criteria(req.resource_type, req.query))
        if len(found) > 1:
            raise FhirError(412, "multiple-matches", "The criteria match more than one resource")
        if found:
            await store.delete(req.resource_type, found[0].id)
        return FhirResponse(204)

    # -- type and system level ----------------------------------------------------------
    async def search(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        handling = req.prefer.get("handling")
        sreq = self.rt.parser.parse(req.resource_type, req.query, lenient=handling == "lenient",
                                    ignore_unknown=handling != "strict")
        sreq.compartment = req.compartment
        page = await store.search(sreq)
        path = req.resource_type
        if req.compartment is not None:
            path = f"Patient/{req.compartment}/{req.resource_type}"
        bundle = searchset.build(self.rt.base_url, path, sreq, page)
        return FhirResponse(200, body=bundle)

    async def history(self, store: ResourceStore, req: FhirRequest) -> FhirResponse:
        params = dict(req.query)
        unknown = set(params) - {"_since", "_at", "_count", "_cursor", "_format", "_pretty"}
        if unknown and req.prefer.get("handling") != "lenient":
            name = sorted(unknown)[0]
            raise bad_request(f"Unknown history parameter '{name}'", name)
        since = at = None
        try:
            if "_since" in params:
                since = dates.parse_instant(params["_since"])
            if "_at" in params:
                at = dates.parse_range(params["_at"])[1]
        except dates.DateFormatError as exc:
            raise bad_request(str(exc), "_since" if "_since" in params else "_at") from exc
        count_text = params.get("_count", str(self.rt.settings.default_page_size))
        if not is_digits(count_text):
            raise bad_request("_count must be a non-negative integer", "_count")
        count = min(int(count_text), self.rt.settings.max_page_size)
        page = await store.history(req.resource_type, req.id, since, at, count,
                                   params.get("_cursor"))
        return FhirResponse(200, body=searchset.history(self.rt.base_url, req, page))
