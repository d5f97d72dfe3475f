"""Security labels computed from content by the rules in `profiles/rules/security-labels.json`.

The computed labels are a floor: they are added to whatever the client sent, a client label of
our data-category system survives only as an addition, and the store keeps every label an
earlier version had. So nothing a writer does can make a resource visible to more readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..fhir.outcome import FhirError, Issue
from ..store.indexer import references_in
from .validator import codings_of


@dataclass(frozen=True)
class Condition:
    kind: str  # profile | code | codeSystem | category | questionnaire | answered | freeText
    system: str | None = None
    code: str | None = None
    url: str | None = None
    link_ids: frozenset[str] = frozenset()
    paths: tuple[tuple[str, ...], ...] = ()
    """freeText: the element paths (split at the dots) whose strings are free text."""
    skip: frozenset[str] = frozenset()
    """freeText: extension urls whose content is not counted (text written for the reader)."""


@dataclass(frozen=True)
class Rule:
    id: str
    types: frozenset[str] | None
    any_of: tuple[Condition, ...]
    labels: tuple[str, ...]
    none_of: tuple[Condition, ...] = ()
    system: str | None = None
    """The labels' system when it is not the file's (data-category) system."""


def _condition(data: dict[str, Any]) -> Condition:
    if "freeText" in data:
        spec = data["freeText"]
        return Condition("freeText", paths=tuple(tuple(p.split(".")) for p in spec["paths"]),
                         skip=frozenset(spec.get("exceptExtensions", [])))
    if "profile" in data:
        return Condition("profile", url=data["profile"].split("|")[0])
    if "answered" in data:
        spec = data["answered"]
        return Condition("answered", url=spec["questionnaire"].split("|")[0],
                         link_ids=frozenset(spec["linkId"]))
    if "questionnaire" in data:
        return Condition("questionnaire", url=data["questionnaire"].split("|")[0])
    if "codeSystem" in data:
        return Condition("codeSystem", system=data["codeSystem"])
    for kind in ("code", "category"):
        if kind in data:
            return Condition(kind, system=data[kind]["system"], code=data[kind]["code"])
    raise ValueError(f"unknown security-label condition {data}")


def _codings(value: Any) -> list[tuple[str | None, str | None]]:
    values = value if isinstance(value, list) else [value]
    return [pair for v in values for pair in codings_of(v)]


def _answers_any(items: Any, link_ids: frozenset[str]) -> bool:
    """Whether a QuestionnaireResponse answers one of these items, at any depth (an answer
    with any value counts: an empty one cannot be told from one that says something)."""
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("linkId") in link_ids and item.get("answer"):
            return True
        if _answers_any(item.get("item"), link_ids):
            return True
        answers = item.get("answer")
        for answer in answers if isinstance(answers, list) else []:
            if isinstance(answer, dict) and _answers_any(answer.get("item"), link_ids):
                return True
    return False


def _has_text(node: Any, path: tuple[str, ...], skip: frozenset[str]) -> bool:
    """Whether a non-blank string sits at `path` below `node` (lists are walked element by
    element); an element whose `url` is in `skip` (an extension written for the reader) and
    everything below it does not count."""
    if isinstance(node, list):
        return any(_has_text(item, path, skip) for item in node)
    if not path:
        return isinstance(node, str) and node.strip() != ""
    if not isinstance(node, dict) or node.get("url") in skip:
        return False
    return _has_text(node.get(path[0]), path[1:], skip)


def _rule(data: dict[str, Any]) -> Rule:
    match = data["match"]
    return Rule(data["id"], frozenset(match["resourceType"]) if "resourceType" in match else None,
                tuple(_condition(c) for c in match.get("anyOf", [])), tuple(data["labels"]),
                tuple(_condition(c) for c in match.get("noneOf", [])), data.get("system"))


class SecurityLabeler:
    """The rules file, parsed once; `labels_for` is pure and `apply` is the write check."""

    def __init__(self, rules: dict[str, Any], compartment_types: frozenset[str],
                 displays: dict[str, str] | None = None,
                 listed_types: frozenset[str] | None = None) -> None:
        self.system: str = rules["system"]
        parsed = [_rule(r) for r in rules["rules"]]
        self.rules = tuple(r for r in parsed if r.system in (None, self.system))
        self.other_rules = tuple(r for r in parsed if r.system not in (None, self.system))
        """Rules whose labels are of another system (the clinical-text label): never data
        categories, so no consent provision weighs them and they never stand in for the
        default label; only the access rules' `neverLabels` read them."""
        self.default = tuple(rules.get("default", {}).get("labels", []))
        self.exempt = frozenset(rules.get("exempt", []))
        self.compartment_types = compartment_types
        self.listed_types = listed_types if listed_types is not None else compartment_types
        """Types the compartment definition decides on; a resource of any other type is
        record data when it references a Patient (as `Indexer.index` decides)."""
        self.displays = displays
        """code -> display of the data-category CodeSystem; None when it is not shipped."""

    @classmethod
    def from_file(cls, path: Path, compartment_types: frozenset[str],
                  displays: dict[str, str] | None = None,
                  listed_types: frozenset[str] | None = None) -> SecurityLabeler:
        return cls(orjson.loads(path.read_bytes()), compartment_types, displays, listed_types)

    def _record_data(self, resource: dict[str, Any]) -> bool:
        rtype = resource.get("resourceType")
        if rtype in self.compartment_types:
            return True
        return rtype not in self.listed_types and any(
            t == "Patient" for t, _ in references_in(resource))

    def labels_for(self, resource: dict[str, Any]) -> list[str]:
        """The data-category codes the content calls for, in rule order, without duplicates."""
        rtype = resource.get("resourceType")
        if rtype in self.exempt:
            return []
        out: list[str] = []
        for rule in self.rules:
            if self._matches(rule, resource):
                out += [label for label in rule.labels if label not in out]
        if not out and self._record_data(resource):
            out = list(self.default)
        return out

    def other_labels_for(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        """The (system, code) labels of the rules with their own system, in rule order."""
        if resource.get("resourceType") in self.exempt:
            return []
        out: list[tuple[str, str]] = []
        for rule in self.other_rules:
            if self._matches(rule, resource):
                out += [(str(rule.system), c) for c in rule.labels
                        if (rule.system, c) not in out]
        return out

    def _matches(self, rule: Rule, resource: dict[str, Any]) -> bool:
        if rule.types is not None and resource.get("resourceType") not in rule.types:
            return False
        if rule.any_of and not any(self._holds(c, resource) for c in rule.any_of):
            return False
        return not any(self._holds(c, resource) for c in rule.none_of)

    @staticmethod
    def _holds(cond: Condition, resource: dict[str, Any]) -> bool:
        if cond.kind == "freeText":
            return any(_has_text(resource, path, cond.skip) for path in cond.paths)
        if cond.kind == "profile":
            meta = resource.get("meta") or {}
            return any(isinstance(p, str) and p.split("|")[0] == cond.url
                       for p in meta.get("profile") or [])
        if cond.kind in ("questionnaire", "answered"):
            q = resource.get("questionnaire")
            if not (isinstance(q, str) and q.split("|")[0] == cond.url):
                return False
            return cond.kind == "questionnaire" or _answers_any(resource.get("item"), cond.link_ids)
        if cond.kind == "category":
            return (cond.system, cond.code) in _codings(resource.get("category"))
        codes = _codings(resource.get("code"))
        for comp in resource.get("component") or []:
            if isinstance(comp, dict):
                codes += _codings(comp.get("code"))
        if cond.kind == "code":
            return (cond.system, cond.code) in codes
        return any(s == cond.system for s, _ in codes)

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Write check: add the computed labels to meta.security (client labels of other
        systems and additional labels of ours are kept; an unknown code of ours is refused)."""
        rtype = str(resource.get("resourceType"))
        meta = dict(resource.get("meta") or {})
        security = [s for s in meta.get("security") or [] if isinstance(s, dict)]
        for i, label in enumerate(security):
            if (label.get("system") == self.system and self.displays is not None
                    and label.get("code") not in self.displays):
                where = f"{rtype}.meta.security[{i}]"
                raise FhirError(422, "code-invalid", f"{where}: '{label.get('code')}' is not a "
                                f"code of {self.system}", issues=[Issue(
                                    "code-invalid", f"'{label.get('code')}' is not a code of "
                                    f"{self.system}", expression=[where])])
        present = {(s.get("system"), s.get("code")) for s in security}
        added = [self._coding(code) for code in self.labels_for(resource)
                 if (self.system, code) not in present]
        added += [{"system": system, "code": code} for system, code in
                  self.other_labels_for(resource) if (system, code) not in present]
        if not added:
            return resource
        meta["security"] = security + added
        return {**resource, "meta": meta}

    def _coding(self, code: str) -> dict[str, str]:
        display = (self.displays or {}).get(code)
        coding = {"system": self.system, "code": code}
        return {**coding, "display": display} if display else coding
