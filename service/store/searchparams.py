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

    @property
    def key(self) -> str:
        """The value of the `param` column in index tables: type-qualified, one index per base."""
        return f"{self.base}.{self.code}"


def _compile(expression: str) -> Callable[[dict[str, Any]], list[Any]]:
    # resolve() is not evaluable at write time; the `target` list restricts types instead.
    fn = fhirpath_compile(_RESOLVE_RE.sub("", expression), _R4)

    def run(resource: dict[str, Any]) -> list[Any]:
        result = fn(resource, {})
        return result if isinstance(result, list) else [result]

    return run


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
        for entry in (patient_compartment or {}).get("resource", []):
            if entry.get("param"):
                self.compartment_params[entry["code"]] = tuple(entry["param"])

    def _add(self, sp: dict[str, Any], base: str) -> None:
        code = sp["code"]
        expression = sp.get("expression", "")
        param = SearchParam(
            code=code,
            base=base,
            type=sp["type"],
            expression=expression,
            url=sp.get("url", ""),
            targets=tuple(sp.get("target", [])),
            modifiers=tuple(sp.get("modifier", [])),
            description=sp.get("description", ""),
            evaluate=_compile(expression) if expression and code not in COLUMN_PARAMS else None,
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
        """Parameters that produce index rows (everything not answered from columns)."""
        return [p for p in self._lookup(resource_type).values() if p.evaluate is not None]

    def types_with_params(self) -> list[str]:
        return sorted(self._by_type)
