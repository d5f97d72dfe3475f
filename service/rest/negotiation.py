"""Content negotiation: FHIR JSON and FHIR XML in and out, `_format`, `_pretty`, size limits.

JSON is the native form: it is what the store holds and what every answer is unless the client
asks for XML (`_format=xml`, or an Accept that prefers an XML type), and then the same answer is
converted on the way out (`service.fhir.xml`). A request body in XML (`Content-Type:
application/fhir+xml`) is converted on the way in, so everything behind this module sees JSON.
Anything else gets 406 (Accept/_format) or 415 (Content-Type) with an OperationOutcome rather
than a silent answer a client would mis-parse.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from ..fhir import xml
from ..fhir.digits import is_digits
from ..fhir.outcome import FhirError

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"}
PATCH_TYPES = {"application/json-patch+json"}
FORMAT_JSON = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
FORMAT_XML = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}
JSON = "json"
XML = "xml"


FHIR_VERSIONS = {"4.0", "4.0.1"}
"""The `fhirVersion` MIME parameter values this server answers (R4, FHIR 3.1.0.1.1)."""
ANY_RANGES = {"*/*", "application/*"}


def _media(text: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; p=v` -> ('type/subtype', {p: v}), lower-cased."""
    kind, *params = [p.strip() for p in text.split(";")]
    values = {}
    for param in params:
        key, _, value = param.partition("=")
        values[key.strip().lower()] = value.strip().strip('"')
    return kind.lower(), values


def _version_ok(params: dict[str, str]) -> bool:
    return params.get("fhirversion", "4.0") in FHIR_VERSIONS


def response_format(request: Request) -> str | None:
    """`json` or `xml`: what the answer to `request` is written in; None when nothing the
    client accepts can be served (406).

    `_format` overrides Accept. Accept is read as HTTP means it: media ranges with q-values;
    the format with the highest q wins, an explicit type beats a wildcard at equal q, and a
    full tie is JSON. When the client states no preference (no Accept, or only wildcards), the
    answer follows the body it sent, as FHIR R4 (3.1.0.1.10) recommends: XML in, XML out.
    """
    fmt = request.query_params.get("_format")
    if fmt is not None:
        kind, params = _media(fmt)
        if not _version_ok(params):
            return None
        return JSON if kind in FORMAT_JSON else XML if kind in FORMAT_XML else None
    accept = request.headers.get("accept", "").strip()
    best = {JSON: (0.0, -1), XML: (0.0, -1)}
    for part in (accept or "*/*").split(","):
        if not part.strip():
            continue
        kind, params = _media(part)
        try:
            weight = float(params.get("q", "1"))
        except ValueError:
            weight = 1.0
        if weight <= 0 or not _version_ok(params):
            continue
        for name, exact in ((JSON, JSON_TYPES), (XML, XML_TYPES)):
            specific = 1 if kind in exact else 0 if kind in ANY_RANGES else -1
            if specific >= 0:
                best[name] = max(best[name], (weight, specific))
    if best[JSON][1] < 0 and best[XML][1] < 0:
        return None
    if best[XML] > best[JSON]:
        return XML
    if best[XML] == best[JSON] and best[JSON][1] == 0 and _body_type(request) in XML_TYPES:
        return XML
    return JSON


def _body_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def check_accept(request: Request) -> None:
    """406 unless the answer can be written in a format the client accepts (FHIR R4 JSON or
    XML; see `response_format`)."""
    if response_format(request) is not None:
        return
    fmt = request.query_params.get("_format")
    if fmt is not None:
        raise FhirError(406, "not-supported", f"_format '{fmt}' is not supported; use json or "
                        "xml (FHIR R4)", "_format")
    accept = request.headers.get("accept", "").strip()
    raise FhirError(406, "not-supported",
                    f"Cannot answer in '{accept[:200]}': only FHIR R4 JSON "
                    "(application/fhir+json) and XML (application/fhir+xml) are served")


async def read_body(request: Request, max_bytes: int, allow_patch: bool = False,
                    optional: bool = False) -> Any:
    """The body as parsed JSON (an XML body converted to it); 413 when too large, 415 for other
    media types, 400 when unparsable. A JSON Patch is JSON only (there is no XML form)."""
    declared = request.headers.get("content-length")
    if declared and is_digits(declared) and int(declared) > max_bytes:
        raise FhirError(413, "too-long", f"The body exceeds {max_bytes} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if optional and not ctype and declared in (None, "0"):
        return None  # an operation POSTed without parameters
    allowed = JSON_TYPES | (PATCH_TYPES if allow_patch else XML_TYPES)
    if ctype not in allowed:
        send = "application/json-patch+json" if allow_patch else f"{FHIR_JSON} or {FHIR_XML}"
        raise FhirError(415, "not-supported",
                        f"Content-Type '{ctype or 'none'}' is not supported; send {send}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise FhirError(413, "too-long", f"The body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise FhirError(400, "invalid", "The request body is empty")
    if ctype in XML_TYPES:
        return _checked(xml.from_xml(raw))
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, "structure", f"The body is not valid JSON: {exc}") from exc
    _refuse_duplicate_keys(raw)
    if b"\\u0000" in raw:  # cheap pre-check; the walk below runs only when it may matter
        return _checked(body)
    return body


def _checked(body: Any) -> Any:
    """`body`, unless a string in it holds NUL (which FHIR forbids and PostgreSQL cannot
    store): then 422 with its path. (Well-formed XML cannot carry NUL at all; the check is
    kept on that path too so the rule does not depend on the parser.)"""
    path = _nul_path(body, body.get("resourceType", "") if isinstance(body, dict) else "")
    if path is not None:
        raise FhirError(422, "value", "FHIR strings may not contain the NUL character",
                        path or None)
    return body


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)


def _refuse_duplicate_keys(raw: bytes) -> None:
    """400 for an object with a repeated name: FHIR JSON forbids it, and parsers disagree on
    which value wins (orjson keeps the last), so a proxy or validator in front of us could
    judge a different resource than the one we would store. orjson cannot report duplicates;
    the standard parser, run after orjson has accepted the body (so depth and number limits
    are already checked), can, building nothing."""
    try:
        json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise FhirError(400, "structure", f"The body repeats the JSON property '{exc.args[0]}'",
                        str(exc.args[0])) from exc


def _nul_path(node: Any, path: str) -> str | None:
    """The path of the first string holding U+0000, which FHIR forbids and PostgreSQL cannot
    store; None when there is none."""
    if isinstance(node, str):
        return path if "\x00" in node else None
    if isinstance(node, dict):
        for key, value in node.items():
            if "\x00" in key:
                return path
            found = _nul_path(value, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _nul_path(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def fhir_response(request: Request | None, status: int, body: dict[str, Any] | None = None,
                  raw: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """The answer in the format the request negotiated (JSON when there is no request, or
    when nothing it accepts can be served: the 406 itself is JSON). Only a FHIR resource has
    an XML form; anything else (a Bulk Data manifest) stays JSON."""
    pretty = request is not None and request.query_params.get("_pretty") == "true"
    if request is not None and (body is not None or raw is not None) and status != 304 \
            and response_format(request) == XML:
        resource = body if body is not None else orjson.loads(raw or "null")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            return Response(content=xml.to_xml(resource, pretty), status_code=status,
                            headers=headers, media_type=f"{FHIR_XML}; charset=utf-8")
    content: bytes | None = None
    if body is not None:
        content = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
    elif raw is not None:
        content = orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2) if pretty \
            else raw.encode()
    if status == 304 or content is None:
        return Response(status_code=status, headers=headers)
    return Response(content=content, status_code=status, headers=headers,
                    media_type=f"{FHIR_JSON}; charset=utf-8")
