"""The OpenAPI document as the server really answers, derived from the routes (issue 14).

FastAPI's own document says each FHIR route answers 200 (or the route's status code) as
`application/json`, and 422 with its own validation schema. Neither is true: every answer leaves
through `fhir_response` as `application/fhir+json` (or `application/fhir+xml` when asked),
validation errors are 400 OperationOutcomes, and any route can answer 401, 403, 404, ... with an
OperationOutcome. This module rewrites the generated document generically, by method and path
shape, never per path, so routes added later are described the same way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from ..conformance.structure import r4_resource_types
from .negotiation import FHIR_JSON, FHIR_XML, FORMAT_JSON, FORMAT_XML, JSON_TYPES, XML_TYPES

OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}
RESOURCE_REF = {"$ref": "#/components/schemas/Resource"}

ERRORS: dict[str, str] = {
    "400": "Bad request: unparsable body, invalid parameter or resource",
    "401": "No valid access token (WWW-Authenticate says why)",
    "403": "The token's scopes or the patient's consent do not permit this",
    "404": "Unknown resource type, or no such resource visible to the caller",
    "405": "Method not allowed here",
    "406": "Only FHIR JSON and FHIR XML are served (Accept or _format)",
    "408": "The request head or body did not arrive in time",
    "409": "Conflict: the id is taken or the resource is referenced",
    "410": "The resource was deleted",
    "412": "Precondition failed (If-Match or conditional criteria)",
    "413": "The body or the Bundle is too large",
    "414": "The request URI or its parameters are too long",
    "415": "Content-Type not supported",
    "422": "Unprocessable: the resource does not conform to its profile",
    "500": "Unexpected server error; nothing was saved",
    "503": "The database or the token issuer is unavailable (Retry-After)",
}
SUCCESS_BY_METHOD = {"get": ("200", "304"), "post": ("200", "201"), "put": ("200", "201"),
                     "patch": ("200",), "delete": ("200", "204")}
EMPTY_SUCCESS = {"204", "304"}
PUBLIC_FHIR_PATHS = {"/fhir/metadata"}


def build(app: FastAPI) -> dict[str, Any]:
    """The document for `app`, cached on it as FastAPI does."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).update(_schemas())
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                "bearerFormat": "JWT"}}
    fhir = _fhir_routes()
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method in SUCCESS_BY_METHOD and (path, method) in fhir:
                _fhir_operation(path, method, operation)
                _parameters(operation, fhir[(path, method)])
            elif method in SUCCESS_BY_METHOD:
                _other_operation(operation, path.startswith("/fhir/"))
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    app.openapi_schema = spec
    return spec


def _fhir_routes() -> dict[tuple[str, str], str]:
    """(path, method) -> handler name, for every route of the FHIR routers, whose answers all
    leave through `fhir_response`."""
    from .operation_routes import router as operations
    from .routes import router as resources
    from .subscription_routes import router as subscriptions

    found: dict[tuple[str, str], str] = {}
    for router in (resources, operations, subscriptions):
        for route in router.routes:
            if isinstance(route, APIRoute):
                # Handlers are described by name (`PARAMS_BY_HANDLER`); the Subscription
                # router's `search` reads no search parameters, so its names are its own.
                name = route.endpoint.__name__
                if router is subscriptions:
                    name = f"subscription.{name}"
                for m in route.methods or ():
                    found[(route.path_format, m.lower())] = name
    return found


def _schemas() -> dict[str, Any]:
    return {
        "OperationOutcome": {
            "type": "object", "required": ["resourceType", "issue"],
            "properties": {
                "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                "issue": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["severity", "code"],
                    "properties": {
                        "severity": {"type": "string",
                                     "enum": ["fatal", "error", "warning", "information"]},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    }}},
            }},
        "ResourceType": {"type": "string", "enum": sorted(r4_resource_types()),
                         "description": "A FHIR R4 resource type"},
        "Resource": {"type": "object", "required": ["resourceType"],
                     "properties": {"resourceType": {"type": "string"}},
                     "description": "A FHIR R4 resource (validated by the server against its "
                                    "StructureDefinition and profiles, not by this schema)"},
    }


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    """FHIR JSON, and the same resource as FHIR XML (for a client that asks for it)."""
    return {FHIR_JSON: {"schema": schema}, FHIR_XML: {"schema": XML_SCHEMA}}


XML_SCHEMA = {"type": "string", "description": "The same resource in FHIR R4 XML "
              "(http://hl7.org/fhir namespace), as `Accept: application/fhir+xml` or "
              "`_format=xml` asks"}


def _fhir_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    """Every status a FHIR route can answer, as FHIR JSON or XML; errors as OperationOutcome.
    A resource body may be sent in any JSON or XML media type read (a JSON Patch only as
    itself)."""
    declared = {code for code in operation.get("responses", {}) if code[0] == "2"}
    responses: dict[str, Any] = {}
    for code in sorted(declared | set(SUCCESS_BY_METHOD[method])):
        if code in EMPTY_SUCCESS:
            responses[code] = {"description": "No content" if code == "204" else "Not modified"}
        else:
            responses[code] = {"description": "Success", "content": _content(RESOURCE_REF)}
    for code, text in ERRORS.items():
        responses[code] = {"description": text, "content": _content(OUTCOME_REF)}
    operation["responses"] = responses
    _type_enum(operation)
    body = operation.get("requestBody")
    if body is not None:
        content = body.get("content", {})
        if FHIR_JSON in content:
            schema = content[FHIR_JSON].get("schema", {})
            for media in sorted(JSON_TYPES):
                content[media] = {"schema": schema}
            for media in sorted(XML_TYPES):
                content[media] = {"schema": XML_SCHEMA}
    if path not in PUBLIC_FHIR_PATHS:
        operation["security"] = [{"bearer": []}]


def _param(name: str, where: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "schema": schema, "description": text}


VERSION_ETAG = {"type": "string", "pattern": r'^\s*(W/)?"*[0-9]+"*\s*$'}
"""What `Interactions.if_match` accepts: a version ETag, W/ and quotes optional."""
COMMON_PARAMS = [
    _param("_format", "query", {"type": "string", "enum": sorted(FORMAT_JSON | FORMAT_XML)},
           "Response format (overrides Accept): JSON or XML; anything else is 406"),
    _param("_pretty", "query", {"type": "string"}, "'true' indents the JSON or XML"),
]
SEARCH_PARAMS = [
    _param("_count", "query", {"type": "string", "pattern": "^[0-9]+$"},
           "Page size (capped at the server's maximum)"),
    _param("_total", "query", {"type": "string", "enum": ["none", "estimate", "accurate"]},
           "Whether to count the matches"),
    _param("_summary", "query",
           {"type": "string", "enum": ["true", "false", "count", "data", "text"]}, "Summary form"),
    _param("_sort", "query", {"type": "string"}, "Sort keys (an unknown one is 400)"),
    _param("_elements", "query", {"type": "string"}, "Elements to return"),
]
PARAMS_BY_HANDLER: dict[str, list[dict[str, Any]]] = {
    "search": SEARCH_PARAMS,
    "system_search": SEARCH_PARAMS,
    "read": [_param("If-None-Match", "header", {"type": "string"}, "304 when this version"),
             _param("If-Modified-Since", "header", {"type": "string"}, "304 when not changed")],
    "create": [_param("If-None-Exist", "header", {"type": "string"},
                      "Conditional create: search criteria (identifier=...)")],
    "update": [_param("If-Match", "header", VERSION_ETAG, "412 unless this is the version")],
    "conditional_update": [_param("If-Match", "header", VERSION_ETAG,
                                  "412 unless the match is at this version")],
    "patch": [_param("If-Match", "header", VERSION_ETAG, "412 unless this is the version")],
    "delete": [_param("If-Match", "header", VERSION_ETAG, "412 unless this is the version")],
}
"""Parameters the handlers read beyond the path, by handler (not by path), so a route added
with the same handler is described alike. Search parameters proper (name=..., code=...) depend
on the resource type and are listed in the CapabilityStatement at /fhir/metadata."""


def _parameters(operation: dict[str, Any], handler: str) -> None:
    params = operation.setdefault("parameters", [])
    names = {p["name"] for p in params}
    for extra in COMMON_PARAMS + PARAMS_BY_HANDLER.get(handler, []):
        if extra["name"] not in names:
            params.append(dict(extra))


def _type_enum(operation: dict[str, Any]) -> None:
    """The `{type}` path parameter lists the resource types served: fuzzing then reaches the
    handlers, and an unknown type (still possible, and answered 404) is a negative case."""
    for param in operation.get("parameters", []):
        if param.get("in") == "path" and param.get("name") == "type":
            param["schema"] = {"$ref": "#/components/schemas/ResourceType"}


def _other_operation(operation: dict[str, Any], under_fhir: bool = False) -> None:
    """Routes outside /fhir (OAuth, discovery, the login page): their errors come in their own
    media type (OAuth JSON, the HTML page); FastAPI's 422 is really a 400; an HTML page may
    redirect (303); an outage is a FHIR 503 like everywhere."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    media = sorted({m for r in responses.values() for m in r.get("content", {})}) or [FHIR_JSON]
    content: dict[str, Any] = {m: {"schema": {}} for m in media}
    codes: tuple[str, ...] = ("400", "401", "403", "405")
    if under_fhir:
        # The Bulk Data status and file endpoints: an unknown, expired or someone else's job is
        # 404, like a resource the caller may not see, and errors come as JSON (Bulk Data 2.0),
        # also where the success is NDJSON.
        codes = ("400", "401", "403", "404", "405")
        content = {**content, "application/json": {"schema": {}}}
    for code in codes:
        responses[code] = {"description": ERRORS[code], "content": content}
    if "text/html" in media:
        responses["303"] = {"description": "Redirect to the client or back to the login page"}
    for code in ("500", "503"):
        responses[code] = {"description": ERRORS[code], "content": _content(OUTCOME_REF)}
