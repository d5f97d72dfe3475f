"""Content negotiation: FHIR JSON in and out, `_format`, `_pretty`, and size limits.

We speak JSON only; a request for XML gets 406 (Accept/_format) or 415 (Content-Type) with an
OperationOutcome rather than a silent JSON answer a client would mis-parse.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from ..fhir.digits import is_digits
from ..fhir.outcome import FhirError

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
PATCH_TYPES = {"application/json-patch+json"}
FORMAT_JSON = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


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


async def check_accept(request: Request) -> None:
    """`_format` (which overrides Accept) or Accept must allow FHIR JSON of R4; else 406.

    Accept is read as HTTP means it: a list of media ranges with q-values, any of which (with
    q > 0) may be JSON, `*/*` or `application/*`; a `fhirVersion` parameter must name R4.
    """
    fmt = request.query_params.get("_format")
    if fmt is not None:
        kind, params = _media(fmt)
        if kind not in FORMAT_JSON or not _version_ok(params):
            raise FhirError(406, "not-supported", f"_format '{fmt}' is not supported; use json "
                            "(FHIR R4)", "_format")
        return
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return
    for part in accept.split(","):
        if not part.strip():
            continue
        kind, params = _media(part)
        try:
            weight = float(params.get("q", "1"))
        except ValueError:
            weight = 1.0
        if weight > 0 and (kind in ANY_RANGES or kind in JSON_TYPES) and _version_ok(params):
            return
    raise FhirError(406, "not-supported",
                    f"Cannot answer in '{accept[:200]}': only FHIR R4 JSON (application/fhir+json) "
                    "is served")


async def read_body(request: Request, max_bytes: int, allow_patch: bool = False,
                    optional: bool = False) -> Any:
    """The parsed JSON body; 413 when too large, 415 for other media types, 400 when unparsable."""
    declared = request.headers.get("content-length")
    if declared and is_digits(declared) and int(declared) > max_bytes:
        raise FhirError(413, "too-long", f"The body exceeds {max_bytes} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if optional and not ctype and declared in (None, "0"):
        return None  # an operation POSTed without parameters
    allowed = JSON_TYPES | (PATCH_TYPES if allow_patch else set())
    if ctype not in allowed:
        raise FhirError(415, "not-supported",
                        f"Content-Type '{ctype or 'none'}' is not supported; send {FHIR_JSON}")
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
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, "structure", f"The body is not valid JSON: {exc}") from exc
    _refuse_duplicate_keys(raw)
    if b"\\u0000" in raw:  # cheap pre-check; the walk below runs only when it may matter
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
    pretty = request is not None and request.query_params.get("_pretty") == "true"
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
