"""Parse `name[:modifier]=value` pairs into a SearchRequest, rejecting what we cannot honour.

R4 3.1.1.3.3: a search ignores parameters it does not know (they are listed in the Bundle and
left out of the self link) unless the client sent `Prefer: handling=strict`; under
`handling=lenient` a malformed value of a known parameter is dropped too. Conditional
interactions parse strictly: ignoring a criterion there would widen what they change.
"""

from __future__ import annotations

import math
import re

from ...fhir.digits import is_digits
from ...fhir.outcome import FhirError, bad_request
from ..searchparams import SearchParamRegistry
from .request import Chain, Criterion, Has, IncludeSpec, SearchRequest, SortKey

CONTROL = {
    "_sort", "_count", "_total", "_summary", "_elements", "_include", "_revinclude",
    "_cursor", "_format", "_pretty", "_since", "_at", "_type",
}
MODIFIERS = {
    "token": {"not", "text", "missing", "exact"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"missing", "identifier"},
    "uri": {"missing", "below", "above"},
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


# Parameters that shape the answer but add no join to the query: not counted as criteria.
UNCOUNTED = {"_count", "_total", "_summary", "_elements", "_cursor", "_format", "_pretty"}


class UnknownParameter(FhirError):
    """A parameter this server does not define for the type searched (ignorable, R4 3.1.1.3.3)."""


def _unknown(message: str, name: str) -> UnknownParameter:
    return UnknownParameter(400, "not-supported", message, name)


class SearchParser:
    def __init__(self, registry: SearchParamRegistry, default_count: int, max_count: int,
                 max_values: int = 1000, max_criteria: int = 50,
                 resource_types: frozenset[str] | None = None) -> None:
        self.registry = registry
        self.resource_types = resource_types or frozenset(registry.types_with_params())
        """What `_type` may name: the resource types the server stores."""
        self.default_count = default_count
        self.max_count = max_count
        self.max_values = max_values
        self.max_criteria = max_criteria

    def parse(
        self, resource_type: str | None, pairs: list[tuple[str, str]], lenient: bool = False,
        ignore_unknown: bool = False,
    ) -> SearchRequest:
        """`lenient` drops every parameter in error; `ignore_unknown` only unknown ones."""
        reject_nul(pairs)
        self._check_size(pairs)
        req = SearchRequest(resource_type=resource_type, count=self.default_count)
        if resource_type is None:
            self._system_types(req, pairs)
        for name, value in pairs:
            try:
                self._one(req, name, value)
            except FhirError as exc:
                if not (lenient or (ignore_unknown and isinstance(exc, UnknownParameter))):
                    raise
                req.ignored.append((name, str(exc)))
                continue
            if name == "_count":
                value = str(req.count)  # the page size used, after the server's maximum
            if name not in ("_cursor", "_format", "_pretty"):
                req.echo.append((name, value))
        return req

    def _check_size(self, pairs: list[tuple[str, str]]) -> None:
        """Refuse, before any parsing, a search whose SQL would be unreasonably large: the
        limits hold also under `Prefer: handling=lenient`, which drops only what is unknown."""
        criteria = [(n, v) for n, v in pairs if n not in UNCOUNTED]
        if len(criteria) > self.max_criteria:
            name = criteria[self.max_criteria][0]
            raise bad_request(f"A search may have at most {self.max_criteria} parameters; this one "
                              f"has {len(criteria)} (from '{name}' on)", name)
        total = 0
        for name, value in criteria:
            total += len(_split_values(value))
            if total > self.max_values:
                raise bad_request(f"A search may have at most {self.max_values} values in all "
                                  f"parameters together; '{name}' goes beyond it "
                                  "(split the search)", name)


    def _system_types(self, req: SearchRequest, pairs: list[tuple[str, str]]) -> None:
        """`GET [base]?_type=A,B` (R4 3.1.1.5.8): one type searches as that type (all its
        parameters apply); several search their common parameters over those types."""
        types: list[str] = []
        for name, value in pairs:
            if name == "_type":
                for t in (v.strip() for v in value.split(",")):
                    if not t:
                        continue
                    if t not in self.resource_types:
                        raise bad_request(f"_type '{t}' is not a resource type of this server",
                                          "_type")
                    if t not in types:
                        types.append(t)
        if len(types) == 1:
            req.resource_type = types[0]
        else:
            req.types = types

    def _one(self, req: SearchRequest, name: str, value: str) -> None:
        rtype = req.resource_type
        if name == "_type":
            return  # read up front by _system_types
        if name == "_count":
            if not is_digits(value):
                raise bad_request(f"_count must be a non-negative integer, not '{value}'", "_count")
            req.count = min(int(value), self.max_count)
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise bad_request(f"_total must be none, estimate or accurate, not '{value}'", "_total")
            req.total = value
        elif name == "_summary":
            if value not in ("true", "false", "count", "data", "text"):
                raise bad_request(f"Unknown _summary value '{value}'", "_summary")
            req.summary = None if value == "false" else value
        elif name == "_elements":
            req.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif name == "_cursor":
            req.cursor = value
        elif name in ("_format", "_pretty"):
            return
        elif name == "_sort":
            req.sort = [self._sort_key(rtype, s) for s in value.split(",") if s]
        elif name.startswith("_include") or name.startswith("_revinclude"):
            self._include(req, name, value)
        elif name.startswith("_has:"):
            if rtype is None:
                raise bad_request("_has needs a resource type", name)
            req.criteria.append(self._has(rtype, name, value))
        elif name in ("_since", "_at"):
            raise bad_request(f"{name} is a history parameter, not a search parameter", name)
        else:
            req.criteria.append(self._criterion(rtype, name, value))

    def _sort_key(self, rtype: str | None, spec: str) -> SortKey:
        desc = spec.startswith("-")
        code = spec[1:] if desc else spec
        if code in ("_id", "_lastUpdated"):
            return SortKey(code, None, desc)
        param = self.registry.get(rtype, code) if rtype else None
        if param is None or param.type not in ("date", "string", "token", "number", "quantity",
                                                  "reference", "uri"):
            raise bad_request(f"Cannot sort {rtype or 'all resources'} by '{code}'", "_sort")
        return SortKey(code, param, desc)

    def _include(self, req: SearchRequest, name: str, value: str) -> None:
        reverse = name.startswith("_revinclude")
        base = "_revinclude" if reverse else "_include"
        modifier = name[len(base) + 1 :] if name != base else ""
        if modifier not in ("", "iterate", "recurse"):
            raise bad_request(f"Unknown modifier on {base}: '{modifier}'", name)
        if value == "*":
            if reverse:
                raise bad_request("_revinclude=* is not supported", name)
            if not req.resource_type:
                raise bad_request("_include=* needs a resource type", name)
            req.include.append(IncludeSpec(req.resource_type, None, None, bool(modifier)))
            return
        parts = value.split(":")
        if len(parts) < 2 or len(parts) > 3:
            raise bad_request(f"{base} must be SourceType:parameter[:TargetType], not '{value}'", name)
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        param = None
        if code != "*":
            param = self.registry.get(source, code)
            if param is None or param.type != "reference":
                raise bad_request(f"'{source}:{code}' is not a reference search parameter", name)
            if target and param.targets and target not in param.targets:
                raise bad_request(f"'{source}:{code}' cannot point at {target}", name)
        spec = IncludeSpec(source, param, target, bool(modifier), reverse)
        (req.revinclude if reverse else req.include).append(spec)

    def _has(self, rtype: str, name: str, value: str) -> Criterion:
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise bad_request(f"_has must be _has:Type:reference:parameter, not '{name}'", name)
        _, source, ref_code, rest = parts
        ref = self.registry.get(source, ref_code)
        if ref is None or ref.type != "reference":
            raise bad_request(f"'{source}:{ref_code}' is not a reference search parameter", name)
        if ref.targets and rtype not in ref.targets:
            raise bad_request(f"'{source}:{ref_code}' never points at {rtype}", name)
        try:
            inner = (self._has(source, rest, value) if rest.startswith("_has:")
                     else self._criterion(source, rest, value))
        except FhirError as exc:  # name the whole _has parameter, not its tail
            raise bad_request(str(exc), name) from exc
        return Criterion(name, None, None, [], has=Has(source, ref, inner))

    def _criterion(self, rtype: str | None, name: str, value: str) -> Criterion:
        head, _, chain_rest = name.partition(".")
        code, _, modifier = head.partition(":")
        if rtype is None and code not in ("_id", "_lastUpdated", "_tag", "_profile", "_security"):
            raise _unknown(f"Parameter '{code}' needs a resource type (use _type)", name)
        param = self.registry.get(rtype or "Resource", code)
        if param is None:
            raise _unknown(f"Unknown search parameter '{code}' for {rtype}", name)
        if chain_rest:
            if param.type != "reference":
                raise bad_request(f"'{code}' is not a reference parameter and cannot be chained", name)
            targets = [modifier] if modifier else list(param.targets)
            nested_code = chain_rest.split(".")[0].split(":")[0]
            usable = [t for t in targets if self.registry.get(t, nested_code)]
            if not usable:
                raise bad_request(f"No target of '{code}' has a parameter '{nested_code}'", name)
            try:
                inner = {t: self._criterion(t, chain_rest, value) for t in usable}
            except FhirError as exc:  # name the whole chained parameter, not its tail
                raise bad_request(str(exc), name) from exc
            return Criterion(name, param, None, [], chain=Chain(param, inner))
        if modifier:
            allowed = set(MODIFIERS.get(param.type, set()))
            if param.type == "reference" and modifier in param.targets:
                allowed.add(modifier)
            if modifier not in allowed:
                raise bad_request(f"Modifier ':{modifier}' is not supported on '{code}'", name)
        values = _split_values(value)
        if param.type == "date":
            # An unencoded `+` in a time zone arrives as a space; a date never holds one.
            values = [v.replace(" ", "+") for v in values]
        if modifier == "missing":
            if value not in ("true", "false"):
                raise bad_request(f":missing takes true or false, not '{value}'", name)
        elif not values:
            raise bad_request(f"Parameter '{name}' has no value", name)
        if param.type in ("date", "number", "quantity") and modifier != "missing":
            for v in values:
                _check_prefixed(param.type, v, name)
        return Criterion(name, param, modifier or None, values)


def reject_nul(pairs: list[tuple[str, str]]) -> None:
    """400 for U+0000 in any parameter name or value: FHIR strings cannot hold it, PostgreSQL
    text cannot store or compare it (the query would fail), and SQLite would silently match on
    a truncated value. Every search passes here: HTTP, POST `_search` forms, Bundle entries,
    If-None-Exist and conditional update/delete."""
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise bad_request(f"Parameter '{name.replace(chr(0), '%00')}' contains the NUL "
                              "character (%00), which no FHIR value may hold",
                              name.replace("\x00", "%00"))


def _split_values(value: str) -> list[str]:
    """Split on unescaped commas; `\\,` stays a literal comma (R4 3.1.1.3.6)."""
    out, cur, escape = [], [], False
    for ch in value:
        if escape:
            cur.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [v for v in out if v != ""]


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not is_digits(value[:2]):
        return value[:2], value[2:]
    return "eq", value


def _check_prefixed(kind: str, value: str, name: str) -> None:
    from ...fhir.dates import DateFormatError, parse_range

    _, raw = split_prefix(value)
    if kind == "date":
        try:
            parse_range(raw)
        except DateFormatError as exc:
            raise bad_request(str(exc), name) from exc
        except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
            raise bad_request(f"'{raw}' is outside the supported range of dates", name) from exc
    else:
        # FHIR decimal syntax only: Python's float() would also take nan, inf and 1_000.
        number = raw.split("|")[0]
        if not _DECIMAL.match(number) or not math.isfinite(float(number)):
            raise bad_request(f"'{number}' is not a number in '{name}'", name)
