"""The kick-off request of a Bulk Data export (HL7 Bulk Data Access 2.0, `$export`), checked.

Everything the export will do is decided here, once, and stored with the job: the worker that
runs it later (maybe on another instance, after a restart) only reads these parameters. What the
specification says to refuse is a 400 OperationOutcome with the parameter as its expression;
under `Prefer: handling=lenient` what we do not support is dropped and reported in the
manifest's `error` files instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ...fhir import dates
from ...fhir.outcome import FhirError, bad_request
from ...store.search.parser import SearchParser

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
KNOWN = frozenset({"_outputFormat", "_since", "_type", "_typeFilter", "_elements", "patient",
                   "includeAssociatedData", "_format"})
DEFAULT_EXCLUDED = frozenset({"AuditEvent"})
"""Not in an export unless `_type` names it: the audit trail is the server's record of access,
not the record's data, and the export itself adds to it while it runs."""


@dataclass
class ExportParams:
    level: str  # system | patient | group
    types: list[str] | None
    """Explicit `_type` (None: every type the caller may read)."""
    since: str | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)
    """Per type, the search queries (`_typeFilter`) a resource must match one of."""
    elements: list[str] = field(default_factory=list)
    group: str | None = None
    patients: list[str] | None = None
    """Only these patients' records (a Group's members, or the `patient` parameter)."""
    warnings: list[str] = field(default_factory=list)
    """What lenient handling dropped, for the manifest's error file."""

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "types": self.types, "since": self.since,
                "type_filters": self.type_filters, "elements": self.elements,
                "group": self.group, "patients": self.patients, "warnings": self.warnings}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportParams:
        return cls(**data)


def _words(values: list[Any]) -> list[str]:
    """Comma-separated values, repeated or not, as one list."""
    return [w.strip() for v in values for w in str(v).split(",") if w.strip()]


def lenient(headers: dict[str, str]) -> bool:
    prefer = headers.get("prefer", "")
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(","))


def check_headers(headers: dict[str, str]) -> None:
    """`Accept: application/fhir+json` and `Prefer: respond-async` are required (Bulk Data 2.0
    kick-off headers): without them a client would not understand our answer."""
    accept = [part.split(";")[0].strip() for part in headers.get("accept", "").split(",")]
    if "application/fhir+json" not in accept:
        raise bad_request("The kick-off request needs 'Accept: application/fhir+json'", "Accept")
    prefer = [p.strip() for p in headers.get("prefer", "").split(",")]
    if "respond-async" not in prefer:
        raise bad_request("The kick-off request needs 'Prefer: respond-async'", "Prefer")


def parse(level: str, values: Any, headers: dict[str, str], parser: SearchParser,
          known_types: frozenset[str], query_names: list[str]) -> ExportParams:
    """`values(name)` gives every value of a parameter (query string and Parameters body)."""
    soft = lenient(headers)
    params = ExportParams(level=level, types=None)
    for name in query_names:
        if name not in KNOWN:
            _refuse_or_note(params, soft, f"Parameter '{name}' is not supported by $export", name)
    fmt = values("_outputFormat")
    if fmt and str(fmt[-1]) not in OUTPUT_FORMATS:
        raise bad_request(f"_outputFormat '{fmt[-1]}' is not supported; use "
                          "application/fhir+ndjson", "_outputFormat")
    since = values("_since")
    if since:
        params.since = _since(str(since[-1]))
    types = _words(values("_type"))
    if types:
        unknown = [t for t in types if t not in known_types]
        for t in unknown:
            _refuse_or_note(params, soft, f"_type '{t}' is not a FHIR R4 resource type", "_type")
        params.types = list(dict.fromkeys(t for t in types if t in known_types))
    for text in values("_typeFilter"):
        _type_filter(params, str(text), parser, known_types, soft)
    params.elements = _words(values("_elements"))
    patients = values("patient")
    if patients:
        if level == "system":
            raise bad_request("The 'patient' parameter is for Patient- and Group-level exports",
                              "patient")
        params.patients = [_patient_id(p) for p in patients]
    return params


def _refuse_or_note(params: ExportParams, soft: bool, message: str, where: str) -> None:
    if not soft:
        raise bad_request(message, where)
    params.warnings.append(message)


def _since(value: str) -> str:
    try:
        instant = dates.parse_instant(value)
    except (ValueError, TypeError) as exc:
        raise bad_request(f"_since '{value}' is not a FHIR instant", "_since") from exc
    if instant > dates.utcnow():
        raise bad_request(f"_since '{value}' is in the future", "_since")
    return dates.to_instant(instant)


def _type_filter(params: ExportParams, text: str, parser: SearchParser,
                 known_types: frozenset[str], soft: bool) -> None:
    rtype, _, query = text.partition("?")
    if rtype not in known_types or not query:
        _refuse_or_note(params, soft, f"_typeFilter '{text}' is not 'Type?search'", "_typeFilter")
        return
    try:
        parser.parse(rtype, parse_qsl(query, keep_blank_values=True))
    except FhirError as exc:
        _refuse_or_note(params, soft, f"_typeFilter '{text}': {exc.issues[0].diagnostics}",
                        "_typeFilter")
        return
    params.type_filters.setdefault(rtype, []).append(query)


def _patient_id(value: Any) -> str:
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref.startswith("Patient/") or "/" in ref[8:]:
        raise bad_request("'patient' must be a Reference to a Patient (Patient/<id>)", "patient")
    return ref[8:]
