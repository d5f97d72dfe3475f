"""Search parameters as data: SearchParameter resources compiled once into evaluators.

The same registry drives indexing at write time, query compilation at search time and the
CapabilityStatement, so the server can never claim a parameter it does not index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

_R4 = models["r4"]
_RESOLVE_RE = re.compile(r"\.where\(\s*resolve\(\)\s+is\s+\w+\s*\)")

# Parameters the store answers from columns of `resource` or from `resource_label`.
COLUMN_PARAMS = {"_id": "token", "_lastUpdated": "date", "_security": "token"}
SUPPORTED_TYPES = {"token", "string", "date", "number", "quantity", "reference", "uri"}


@dataclass(frozen=True)
class SearchParam:
    """One search parameter on one resource type."""

    code: str
    base: str
    type: str
    expression: str
    url: str
    targets: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    description: str = ""
    evaluate: Callable[[dict[str, Any]], list[Any]] | None = field(
        default=None, compare=False, repr=False
    )
    roots: frozenset[str] | None = field(default=None, compare=False, repr=False)
    """Top-level elements the expression reads; when none is present, nothing to index."""
    ongoing: Callable[[dict[str, Any]], bool] | None = field(
        default=None, compare=False, repr=False)
    """For a date parameter with the extension `clinical-date-ongoing`: whether a resource's
    dates run on past the latest of them (an active Condition without abatement)."""

    @property
    def key(self) -> str:
        """The value of the `param` column in index tables: type-qualified, one index per base."""
        return f"{self.base}.{self.code}"


_STEP_RE = re.compile(
    r"\.?(?:(?P<fn>ofType|where)\((?P<arg>(?:[^()']|'[^']*')*)\)|(?P<name>[A-Za-z][A-Za-z0-9]*))")
_SYSTEM_RE = re.compile(r"^\s*system\s*=\s*'([^']*)'\s*$")

Step = tuple[str, Any]  # ("name", str) | ("type", str) | ("systems", frozenset[str])


def _steps(text: str) -> list[Step] | None:
    """`a.b.ofType(Quantity)` or `code.coding.where(system='x')` as steps; None otherwise."""
    out: list[Step] = []
    pos = 0
    while pos < len(text):
        m = _STEP_RE.match(text, pos)
        if m is None or m.end() == pos:
            return None
        if m.group("name"):
            out.append(("name", m.group("name")))
        elif m.group("fn") == "ofType":
            out.append(("type", m.group("arg").strip()))
        else:
            systems = []
            for alternative in m.group("arg").split(" or "):
                sm = _SYSTEM_RE.match(alternative)
                if sm is None:
                    return None
                systems.append(sm.group(1))
            out.append(("systems", frozenset(systems)))
        pos = m.end()
    return out


def _walk(node: Any, steps: list[Step]) -> list[Any]:
    """Follow steps through JSON the way FHIRPath does for these simple forms: lists
    flatten; `effective` also finds the choice keys `effectiveDateTime`, `effectivePeriod`;
    a name followed by a type (`as Quantity`, `ofType(Quantity)`) finds only that choice."""
    current = [node]
    for index, (kind, arg) in enumerate(steps):
        if kind == "type":
            continue  # applied together with the name before it
        nxt: list[Any] = []
        if kind == "systems":
            current = [c for c in current if isinstance(c, dict) and c.get("system") in arg]
            continue
        typed = steps[index + 1][1] if index + 1 < len(steps) and steps[index + 1][0] == "type" \
            else None
        for item in current:
            if not isinstance(item, dict):
                continue
            if typed is not None:
                key = arg + typed[:1].upper() + typed[1:]
                found = [item[key]] if key in item else []
            elif arg in item:
                found = [item[arg]]
            else:
                found = [v for k, v in item.items()
                         if k.startswith(arg) and k[len(arg):][:1].isupper()]
            for value in found:
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


def _simple_paths(expression: str, base: str) -> list[list[Step]] | None:
    """The union of simple paths an expression is made of, or None when it needs FHIRPath."""
    paths = []
    for part in expression.split("|"):
        part = part.strip()
        m = re.match(r"^\((.+?) as ([A-Za-z]+)\)(.*)$", part)
        if m:  # (X.value as Quantity).rest == X.value.ofType(Quantity).rest
            part = f"{m.group(1)}.ofType({m.group(2)}){m.group(3)}"
        steps = _steps(part)
        if not steps or steps[0][0] != "name":
            return None
        first = steps[0][1]
        if first in (base, "Resource", "DomainResource"):
            steps = steps[1:]
        elif first[:1].isupper():
            return None
        if not steps or steps[0][0] != "name":
            return None
        if any(k == "type" and (i == 0 or steps[i - 1][0] != "name") for i, (k, _) in enumerate(steps)):
            return None
        paths.append(steps)
    return paths


def _roots(expression: str, base: str) -> frozenset[str] | None:
    """Top-level elements an expression can reach; None when we cannot tell (always run).

    An expression that computes a value (`deceased.exists() and ...`) yields something even
    when its elements are absent, so it is always run."""
    outside_filters = re.sub(r"\.where\((?:[^()]|\([^()]*\))*\)", "", expression)
    if re.search(r"exists\(|empty\(|count\(|not\(|iif\(|\band\b|\bor\b|\bimplies\b|=",
                 outside_filters):
        return None
    roots = set()
    for part in expression.split("|"):
        m = re.match(r"^\(?\s*([A-Za-z][A-Za-z0-9]*)(?:\.([A-Za-z][A-Za-z0-9]*))?", part.strip())
        if not m:
            return None
        first, second = m.group(1), m.group(2)
        if first in (base, "Resource", "DomainResource"):
            if second is None:
                return None
            roots.add(second)
        elif first[:1].islower():
            roots.add(first)
        else:
            return None
    return frozenset(roots) if roots else None


def present(resource: dict[str, Any], roots: frozenset[str] | None) -> bool:
    """Whether any element a parameter reads exists in the resource (cheap pre-check)."""
    if roots is None:
        return True
    return not roots.isdisjoint(element_names(resource))


def element_names(resource: dict[str, Any]) -> frozenset[str]:
    """Every name a root of a parameter may have to be present in `resource`: each key, and
    each of its prefixes that end before a capital (`effectiveDateTime` is there for
    `effective` and `effectiveDate`), so `present` is one set intersection per parameter."""
    names: set[str] = set()
    for key in resource:
        names.add(key)
        for i in range(1, len(key)):
            if key[i].isupper():
                names.add(key[:i])
    return frozenset(names)


def _compile(expression: str, base: str = "") -> Callable[[dict[str, Any]], list[Any]]:
    """An evaluator: plain paths are walked directly (most parameters, at a fraction of the
    cost); anything else goes through fhirpathpy. resolve() is not evaluable at write time;
    the `target` list restricts reference types instead."""
    paths = _simple_paths(_RESOLVE_RE.sub("", expression), base)
    if paths is not None:
        def walk(resource: dict[str, Any]) -> list[Any]:
            out: list[Any] = []
            for steps in paths:
                out.extend(_walk(resource, steps))
            return out

        return walk
    fn = fhirpath_compile(_RESOLVE_RE.sub("", expression), _R4)

    def run(resource: dict[str, Any]) -> list[Any]:
        result = fn(resource, {})
        return result if isinstance(result, list) else [result]

    return run


CLINICAL_DATE_ONGOING = "https://pgo-work.nl/fhir/StructureDefinition/clinical-date-ongoing"
"""On a date SearchParameter (our `clinical-date`s): a FHIRPath boolean telling when the
resource is still going on, so its clinical time has an open end (`indexer.version_facts`)."""


def _compile_ongoing(expression: str) -> Callable[[dict[str, Any]], bool]:
    """A FHIRPath boolean, compiled once: true only when it yields exactly `true`. The rules
    in the profiles are written so that missing data yields true (an unknown end is open);
    an expression that cannot be evaluated on a resource counts as true too (fail closed)."""
    fn = fhirpath_compile(expression, _R4)

    def run(resource: dict[str, Any]) -> bool:
        try:
            result = fn(resource, {})
        except Exception:  # noqa: BLE001 - cannot tell: the data may still be going on
            return True
        return bool(result == [True] or result is True)

    return run


def _ongoing_rule(sp: dict[str, Any]) -> str | None:
    rules = [ext.get("valueString") for ext in sp.get("extension", []) or []
             if ext.get("url") == CLINICAL_DATE_ONGOING and ext.get("valueString")]
    return rules[0] if rules else None


COMPARTMENT_INHERIT = "https://pgo-work.nl/fhir/StructureDefinition/compartment-inherit"


class SearchParamRegistry:
    """All search parameters by resource type, plus the Patient compartment definition."""

    def __init__(
        self,
        search_parameters: Iterable[dict[str, Any]],
        patient_compartment: dict[str, Any] | None = None,
    ) -> None:
        self._common: dict[str, SearchParam] = {}
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        for sp in search_parameters:
            ptype = sp.get("type")
            if ptype not in SUPPORTED_TYPES:
                continue
            for base in sp.get("base", []):
                self._add(sp, base)
        self.compartment_params: dict[str, tuple[str, ...]] = {}
        """Per type, the reference parameters that put a resource in a Patient's compartment."""
        self.compartment_inherit: dict[str, tuple[str, ...]] = {}
        """Per type, reference parameters through which a resource also belongs to the
        compartments of what it references (our extension: a Provenance of a resource in a
        record is part of that record)."""
        entries = (patient_compartment or {}).get("resource", [])
        self.compartment_listed = frozenset(e["code"] for e in entries if e.get("code"))
        """Types the definition decides on; any other type joins the record of every Patient
        it references (`Indexer.index`)."""
        for entry in entries:
            if entry.get("param"):
                self.compartment_params[entry["code"]] = tuple(entry["param"])
            inherit = [ext.get("valueString") for ext in entry.get("extension", [])
                       if ext.get("url") == COMPARTMENT_INHERIT and ext.get("valueString")]
            if inherit:
                self.compartment_inherit[entry["code"]] = tuple(
                    f"{entry['code']}.{code}" for code in inherit)

    def _add(self, sp: dict[str, Any], base: str) -> None:
        code = sp["code"]
        expression = sp.get("expression", "")
        ongoing = _ongoing_rule(sp) if sp["type"] == "date" else None
        param = SearchParam(
            code=code,
            base=base,
            type=sp["type"],
            expression=expression,
            url=sp.get("url", ""),
            targets=tuple(sp.get("target", [])),
            modifiers=tuple(sp.get("modifier", [])),
            description=sp.get("description", ""),
            evaluate=_compile(expression, base) if expression and code not in COLUMN_PARAMS else None,
            roots=_roots(_RESOLVE_RE.sub("", expression), base) if expression else None,
            ongoing=_compile_ongoing(ongoing) if ongoing else None,
        )
        if base in ("Resource", "DomainResource"):
            self._common[code] = param
        else:
            self._by_type.setdefault(base, {})[code] = param

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """Every parameter that applies to `resource_type`, common ones included.

        Common parameters (_tag, _profile, ...) keep their `Resource` base, so their index rows
        carry one key for every type and a system-level search (`GET /fhir?_tag=`) finds them.
        """
        out = dict(self._common)
        out.update(self._by_type.get(resource_type, {}))
        return out

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self._lookup(resource_type).get(code)

    def _lookup(self, resource_type: str) -> dict[str, SearchParam]:
        cache = self.__dict__.setdefault("_cache", {})
        if resource_type not in cache:
            cache[resource_type] = self.for_type(resource_type)
        return cache[resource_type]

    def indexed(self, resource_type: str) -> list[SearchParam]:
        """Parameters that produce index rows (everything not answered from columns); built
        once per type, as every write asks."""
        cache = self.__dict__.setdefault("_indexed", {})
        if resource_type not in cache:
            cache[resource_type] = [p for p in self._lookup(resource_type).values()
                                    if p.evaluate is not None]
        return list(cache[resource_type])

    def types_with_params(self) -> list[str]:
        return sorted(self._by_type)
