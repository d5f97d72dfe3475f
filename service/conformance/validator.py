"""Profile validation driven by our StructureDefinitions, compiled once at start-up.

Each differential element becomes an `ElementRule` (cardinality, fixed and pattern values,
allowed types of a choice element, a binding, FHIRPath invariants); validating an instance is
running the rules, so a new or changed profile needs new data, never new Python.

Decisions where FHIR leaves room:
- A pattern on a repeating element applies to every repetition (FHIR semantics without
  slicing); a Coding in a pattern matches on the elements the pattern gives.
- Required binding: at least one coding must be in the expanded ValueSet; a system we do not
  ship in full (ISCO-08, ICF, ...) that the ValueSet includes whole accepts any of its codes.
- Extensible binding: a coding from a CodeSystem we ship in full that the ValueSet includes must
  be in the ValueSet (error); anything else outside it is a warning, never a rejection, because
  other ICF lists may extend the cancer-and-work selection.
- An invariant passes only when it evaluates to exactly `true`.
- `targetProfile` on references is not checked (that needs the target); the profiles' own
  invariants (lcp-1, rtw-1) check the reference types.
- Every Quantity with system UCUM in a profiled resource must have a valid UCUM code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from ..fhir import ucum
from ..fhir.outcome import Issue
from .elements import Located, children, choice_type, locate, type_suffix, walk
from .invariant_scope import context_roots, project
from .terminology import Terminology

_R4 = models["r4"]
MEMO_SIZE = 50_000
BINDABLE = frozenset({"CodeableConcept", "Coding", "code", "string", "uri"})


class ConformanceError(Exception):
    """Our own conformance content cannot be compiled: a bug in profiles/, found at start-up."""


@dataclass(frozen=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    run: Callable[..., Any] = field(compare=False, repr=False)
    roots: frozenset[str] | None = field(default=None, compare=False, repr=False)
    """The context's elements the invariant can read (`invariant_scope.context_roots`); None
    when it may read more, and is then evaluated every time."""


@dataclass(frozen=True)
class Binding:
    strength: str
    value_set: str


@dataclass(frozen=True)
class ElementRule:
    path: str
    parent: tuple[str, ...]
    name: str
    min: int = 0
    max: int | None = None
    types: tuple[str, ...] = ()
    fixed: tuple[str, Any] | None = None
    pattern: tuple[str, Any] | None = None
    binding: Binding | None = None
    invariants: tuple[Invariant, ...] = ()

    def missing_name(self) -> str:
        """How an absent element is named: `valueQuantity` when one type is allowed."""
        if self.name.endswith("[x]"):
            base = self.name[:-3]
            return base + type_suffix(self.types[0]) if len(self.types) == 1 else base
        return self.name


@dataclass(frozen=True)
class Profile:
    url: str
    type: str
    kind: str
    rules: tuple[ElementRule, ...]
    invariants: tuple[Invariant, ...]
    max: int | None
    defining_element: str | None
    defining_codes: frozenset[tuple[str, str]]
    """Codings (from our own CodeSystems) whose presence in `defining_element` means the
    resource is this kind of thing, and so must conform even without claiming the profile."""


def _max(value: str | None) -> int | None:
    return None if value in (None, "*") else int(str(value))


def _typed_value(element: dict[str, Any], prefix: str) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith(prefix) and key[len(prefix):][:1].isupper():
            return key[len(prefix):], value
    return None


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: everything the pattern states is present with the same value;
    an array in the pattern needs a matching item in the instance for each of its items."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(matches_pattern(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


def codings_of(value: Any) -> list[tuple[str | None, str | None]]:
    """The (system, code) pairs a bindable value carries."""
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or "text" in value and "code" not in value:
        return [(c.get("system"), c.get("code")) for c in value.get("coding", [])
                if isinstance(c, dict)]
    if "code" in value:
        return [(value.get("system"), value.get("code"))]
    return []


class ProfileValidator:
    """All our StructureDefinitions, compiled, with the terminology their bindings use."""

    def __init__(self, structure_definitions: list[dict[str, Any]], terminology: Terminology,
                 canonical_base: str) -> None:
        self.terminology = terminology
        self.canonical_base = canonical_base.rstrip("/") + "/"
        self.profiles: dict[str, Profile] = {}
        for sd in structure_definitions:
            if sd.get("derivation") == "constraint" and sd.get("differential"):
                self.profiles[sd["url"]] = self._compile(sd)
        self.extensions = {p.url: p for p in self.profiles.values() if p.type == "Extension"}
        self._memo: dict[tuple[str, str | None, bytes], str | None] = {}
        """Invariant outcomes by the content they depend on (`_outcome`)."""

    # -- compilation -----------------------------------------------------------------------
    def _compile(self, sd: dict[str, Any]) -> Profile:
        url, rtype = sd["url"], sd["type"]
        rules: list[ElementRule] = []
        root_invariants: tuple[Invariant, ...] = ()
        root_max: int | None = None
        for element in sd["differential"]["element"]:
            if ":" in element.get("id", "") or "slicing" in element:
                raise ConformanceError(f"{url}: slicing is not supported ({element.get('id')})")
            path: str = element["path"]
            segments = tuple(path.split(".")[1:])
            invariants = tuple(self._invariant(url, path, c) for c in element.get("constraint", []))
            if not segments:
                root_invariants, root_max = invariants, _max(element.get("max"))
                continue
            binding = element.get("binding")
            if binding and binding.get("strength") in ("required", "extensible") \
                    and self.terminology.expand(binding["valueSet"]) is None:
                raise ConformanceError(f"{url}: {path} binds to unknown ValueSet "
                                       f"{binding['valueSet']}")
            rules.append(ElementRule(
                path=path, parent=segments[:-1], name=segments[-1],
                min=int(element.get("min", 0)), max=_max(element.get("max")),
                types=tuple(t["code"] for t in element.get("type", [])),
                fixed=_typed_value(element, "fixed"), pattern=_typed_value(element, "pattern"),
                binding=Binding(binding["strength"], binding["valueSet"].split("|")[0])
                if binding and binding.get("strength") in ("required", "extensible") else None,
                invariants=invariants))
        element, codes = self._defining(rtype, rules)
        return Profile(url, rtype, sd.get("kind", "resource"), tuple(rules), root_invariants,
                       root_max, element, codes)

    def _invariant(self, url: str, path: str, constraint: dict[str, Any]) -> Invariant:
        expression = constraint.get("expression")
        if not expression:
            raise ConformanceError(f"{url}: constraint {constraint.get('key')} has no expression")
        try:
            run = fhirpath_compile(expression, _R4)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a content bug
            raise ConformanceError(f"{url}: constraint {constraint.get('key')} does not "
                                   f"compile: {exc}") from exc
        return Invariant(constraint["key"], constraint.get("severity", "error"),
                         constraint.get("human", ""), expression, run, context_roots(expression))

    def _defining(self, rtype: str,
                  rules: list[ElementRule]) -> tuple[str | None, frozenset[tuple[str, str]]]:
        """The element and codes that identify this kind of resource: `code` when the profile
        constrains it, else `category`; only codes from our own CodeSystems count, so a zib or
        IHE ODH resource that merely shares a LOINC or SNOMED code is not forced into our
        profile."""
        top = {r.name: r for r in rules if not r.parent}
        for name in ("code", "category"):
            rule = top.get(name)
            if rule is None or not (rule.pattern or rule.fixed or rule.binding):
                continue
            codes: set[tuple[str, str]] = set()
            for source in (rule.pattern, rule.fixed):
                if source:
                    codes |= {(s, c) for s, c in codings_of(source[1]) if s and c}
            if rule.binding and rule.binding.strength == "required":
                exp = self.terminology.expand(rule.binding.value_set)
                codes |= set(exp.concepts) if exp else set()
            own = frozenset((s, c) for s, c in codes if s.startswith(self.canonical_base))
            return name, own
        return None, frozenset()

    # -- which profiles apply ----------------------------------------------------------------
    def applicable(self, resource: dict[str, Any]) -> tuple[list[Profile], list[Issue]]:
        """Profiles the resource claims or whose defining code it carries, and issues for
        claims we cannot honour (an unknown profile under our canonical base, a wrong type)."""
        rtype = str(resource.get("resourceType"))
        chosen: dict[str, Profile] = {}
        issues: list[Issue] = []
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        if not isinstance(claimed, list):
            claimed = []
        for i, url in enumerate(claimed):
            if not isinstance(url, str):
                continue
            base = url.split("|")[0]
            profile = self.profiles.get(base)
            where = [f"{rtype}.meta.profile[{i}]"]
            if profile is None:
                if base.startswith(self.canonical_base):
                    issues.append(Issue("not-supported", f"Profile {base} is not known to this "
                                        "server", expression=where))
                continue
            if profile.type != rtype or profile.kind != "resource":
                issues.append(Issue("invalid", f"Profile {base} constrains {profile.type}, not "
                                    f"{rtype}", expression=where))
                continue
            chosen[base] = profile
        for profile in self.profiles.values():
            if profile.type == rtype and profile.url not in chosen and self._carries(resource, profile):
                chosen[profile.url] = profile
        return list(chosen.values()), issues

    @staticmethod
    def _carries(resource: dict[str, Any], profile: Profile) -> bool:
        if not profile.defining_element or not profile.defining_codes:
            return False
        values = resource.get(profile.defining_element)
        for value in values if isinstance(values, list) else [values]:
            if any(pair in profile.defining_codes for pair in codings_of(value)):
                return True
        return False

    def profile(self, url: str) -> Profile | None:
        return self.profiles.get(url.split("|")[0])

    # -- validation ----------------------------------------------------------------------------
    def validate(self, resource: dict[str, Any], extra: list[str] | None = None) -> list[Issue]:
        """Every issue of the resource against the profiles that apply (plus `extra` urls)."""
        profiles, issues = self.applicable(resource)
        for url in extra or []:
            p = self.profile(url)
            if p is not None and p not in profiles:
                profiles.append(p)
        rtype = str(resource.get("resourceType"))
        for p in profiles:
            issues += self.check(resource, p, rtype)
        if profiles:
            issues += _ucum_issues(resource, rtype)
        issues += self._extension_issues(resource, rtype)
        return _unique(issues)

    def check(self, node: Any, profile: Profile, path: str) -> list[Issue]:
        """The issues of one instance (a resource, or an extension at `path`) against one profile."""
        issues: list[Issue] = []
        for inv in profile.invariants:
            issues += self._invariant_issues(inv, node, path, None, node)
        for rule in profile.rules:
            for parent, ppath in locate(node, rule.parent, path):
                issues += self._rule_issues(rule, parent, ppath, profile, node)
        return issues

    def _rule_issues(self, rule: ElementRule, parent: Any, ppath: str, profile: Profile,
                     root: Any) -> list[Issue]:
        if not isinstance(parent, dict):
            return []
        found = children(parent, rule.name, ppath)
        issues: list[Issue] = []
        if len(found) < rule.min:
            where = f"{ppath}.{rule.missing_name()}" if not found else f"{ppath}.{_key(found[0][1])}"
            issues.append(Issue("required", f"{where}: minimum cardinality of {rule.path} is "
                                f"{rule.min}, found {len(found)} ({profile.url})", expression=[where]))
        if rule.max is not None and len(found) > rule.max:
            where = found[rule.max][1] if rule.max == 0 else f"{ppath}.{_key(found[0][1])}"
            issues.append(Issue("structure", f"{where}: maximum cardinality of {rule.path} is "
                                f"{rule.max}, found {len(found)} ({profile.url})", expression=[where]))
        for value, vpath in found:
            vtype = choice_type(_key(vpath), rule.name[:-3]) if rule.name.endswith("[x]") else None
            if vtype and rule.types and vtype not in rule.types:
                issues.append(Issue("structure", f"{vpath}: type {vtype} is not allowed for "
                                    f"{rule.path}; allowed: {', '.join(rule.types)}",
                                    expression=[vpath]))
                continue
            issues += self._value_issues(rule, value, vpath, vtype, root)
        return issues

    def _value_issues(self, rule: ElementRule, value: Any, vpath: str, vtype: str | None,
                      root: Any) -> list[Issue]:
        issues: list[Issue] = []
        if rule.fixed and value != rule.fixed[1]:
            issues.append(Issue("value", f"{vpath}: must be exactly {rule.fixed[1]!r} "
                                f"(fixed{rule.fixed[0]})", expression=[vpath]))
        if rule.pattern and not matches_pattern(value, rule.pattern[1]):
            issues.append(Issue("value", f"{vpath}: does not match the pattern "
                                f"{_short(rule.pattern[1])} of {rule.path}", expression=[vpath]))
        if rule.binding and (vtype is None or vtype in BINDABLE):
            issues += self._binding_issues(rule.binding, value, vpath)
        for inv in rule.invariants:
            issues += self._invariant_issues(inv, value, vpath, rule.path, root)
        return issues

    def _binding_issues(self, binding: Binding, value: Any, vpath: str) -> list[Issue]:
        exp = self.terminology.expand(binding.value_set)
        if exp is None:
            return []
        pairs = codings_of(value)
        if any(exp.contains(s, c) and not self._undefined(s, c) for s, c in pairs):
            return []
        shown = ", ".join(f"{s or ''}|{c or ''}" for s, c in pairs) or "no coding"
        message = f"{vpath}: {shown} is not in ValueSet {binding.value_set} ({binding.strength} binding)"
        if binding.strength == "required":
            return [Issue("code-invalid", message, expression=[vpath])]
        systems = {s for s, _ in exp.concepts} | exp.open_systems
        if any(s in systems and self.terminology.is_complete(s) for s, _ in pairs):
            return [Issue("code-invalid", message, expression=[vpath])]
        return [Issue("code-invalid", message, severity="warning", expression=[vpath])]

    def _undefined(self, system: str | None, code: str | None) -> bool:
        return bool(system and code and self.terminology.is_complete(system)
                    and self.terminology.lookup(system, code) is None)

    def _invariant_issues(self, inv: Invariant, node: Any, path: str, element_path: str | None,
                          root: Any) -> list[Issue]:
        outcome = self._outcome(inv, node, element_path, root)
        if outcome is None:
            return []
        if outcome:
            return [Issue("invariant", f"{path}: invariant {inv.key} could not be evaluated "
                          f"({outcome}): {inv.human}", severity=_severity(inv), expression=[path])]
        return [Issue("invariant", f"{path}: invariant {inv.key} failed: {inv.human}",
                      severity=_severity(inv), expression=[path])]

    def _outcome(self, inv: Invariant, node: Any, element_path: str | None,
                 root: Any) -> str | None:
        """None when the invariant holds, "" when it fails, else why it cannot be evaluated.

        FHIRPath costs most of validation, and work data repeats itself (the same code, the
        same unit, an absent component): an invariant that reads only some elements of its
        context (`Invariant.roots`) is evaluated once per distinct content of those elements
        and element path, and remembered (bounded: the memo is cleared when full)."""
        key = None
        if inv.roots is not None and isinstance(node, dict):
            try:
                key = (inv.expression, element_path,
                       orjson.dumps(project(node, inv.roots), option=orjson.OPT_SORT_KEYS))
            except TypeError:  # not JSON orjson can write (an integer beyond 64 bits)
                key = None
            if key is not None and key in self._memo:
                return self._memo[key]
        try:
            target = node if element_path is None else ResourceNode.create_node(node, element_path)
            result = inv.run(target, {"resource": root, "rootResource": root, "context": node})
            outcome = None if result == [True] else ""
        except Exception as exc:  # noqa: BLE001 - data that breaks an invariant fails it
            outcome = str(exc) or type(exc).__name__
        if key is not None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = outcome
        return outcome

    def _extension_issues(self, resource: dict[str, Any], rtype: str) -> list[Issue]:
        """Our extensions are checked wherever they occur, against their own definitions."""
        if not self.extensions:
            return []
        issues: list[Issue] = []
        for node, path in walk(resource, rtype):
            if not isinstance(node, dict):
                continue
            for key in ("extension", "modifierExtension"):
                items = node.get(key)
                if not isinstance(items, list):
                    continue
                seen: dict[str, int] = {}
                for i, ext in enumerate(items):
                    url = ext.get("url") if isinstance(ext, dict) else None
                    profile = self.extensions.get(url) if isinstance(url, str) else None
                    if profile is None:
                        continue
                    where = f"{path}.{key}[{i}]"
                    seen[profile.url] = seen.get(profile.url, 0) + 1
                    if profile.max is not None and seen[profile.url] > profile.max:
                        issues.append(Issue("structure", f"{where}: extension {profile.url} may "
                                            f"occur at most {profile.max} time(s) here",
                                            expression=[where]))
                    issues += self.check(ext, profile, where)
        return issues


def _ucum_issues(resource: dict[str, Any], rtype: str) -> list[Issue]:
    issues = []
    for node, path in walk(resource, rtype):
        if (isinstance(node, dict) and node.get("system") == ucum.UCUM_SYSTEM
                and isinstance(node.get("code"), str) and not ucum.is_valid(node["code"])):
            issues.append(Issue("value", f"{path}.code: '{node['code']}' is not a valid UCUM unit",
                                expression=[f"{path}.code"]))
    return issues


def _key(path: str) -> str:
    """The last element name of an instance path, without an index."""
    return path.rsplit(".", 1)[-1].split("[")[0]


def _short(value: Any) -> str:
    pairs = codings_of(value)
    if pairs:
        return ", ".join(f"{s}|{c}" for s, c in pairs)
    return repr(value)[:120]


def _severity(inv: Invariant) -> str:
    return "warning" if inv.severity == "warning" else "error"


def _unique(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue.code, issue.diagnostics, tuple(issue.expression))
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


__all__ = ["ConformanceError", "Located", "Profile", "ProfileValidator", "matches_pattern"]
