"""Terminology over the CodeSystems and ValueSets we ship: expansion, validation, lookup.

ValueSets are expanded from their `compose` (explicit concepts, whole systems, `is-a` /
`descendent-of` filters on our hierarchical CodeSystems, other ValueSets). A system we do not
ship in full (ISCO-08, ICF, LOINC, SNOMED CT) included as a whole becomes an *open* system:
any code of that system is accepted, because we cannot know its codes and must not pretend to.
Concepts of such systems that our ValueSets list explicitly (the ICF cancer-and-work selection,
the ISCO-08 demo list) are remembered as *fragments*, so `$lookup` can still answer for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .package import ConformancePackage

ICF_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icf", "http://hl7.org/fhir/sid/icf-nl"})
"""ICF codes nest by prefix (b1300 is a kind of b130): the one foreign hierarchy we can derive."""
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Concept:
    system: str
    code: str
    display: str | None
    designations: tuple[dict[str, Any], ...] = ()
    definition: str | None = None
    parent: str | None = None
    properties: tuple[dict[str, Any], ...] = ()

    def display_in(self, language: str | None, default_language: str = DEFAULT_LANGUAGE) -> str | None:
        """The display in `language` (a designation), falling back to the CodeSystem's display."""
        if not language or language.split("-")[0] == default_language:
            return self.display
        wanted = language.lower()
        for d in self.designations:
            lang = str(d.get("language", "")).lower()
            if lang == wanted or lang.split("-")[0] == wanted.split("-")[0]:
                value = d.get("value")
                return str(value) if value is not None else self.display
        return self.display

    def knows_display(self, display: str) -> bool:
        return display == self.display or any(d.get("value") == display for d in self.designations)


@dataclass
class Expansion:
    url: str
    concepts: dict[tuple[str, str], Concept] = field(default_factory=dict)
    open_systems: set[str] = field(default_factory=set)

    def contains(self, system: str | None, code: str | None) -> bool:
        if not code:
            return False
        if system is None:
            return any(c == code for (_, c) in self.concepts)
        return (system, code) in self.concepts or system in self.open_systems

    def find(self, system: str | None, code: str) -> Concept | None:
        if system is not None:
            return self.concepts.get((system, code))
        return next((c for (_, k), c in self.concepts.items() if k == code), None)


@dataclass(frozen=True)
class CodeCheck:
    """The answer of a $validate-code: result, message, and the concept's display if known."""

    result: bool
    message: str
    display: str | None = None


class Terminology:
    def __init__(self, package: ConformancePackage) -> None:
        self.package = package
        self.codesystems: dict[str, dict[str, Concept]] = {}
        self.languages: dict[str, str] = {}
        self.codesystem_resources: dict[str, dict[str, Any]] = {}
        for cs in package.of_type("CodeSystem"):
            concepts: dict[str, Concept] = {}
            _walk(cs["url"], cs.get("concept", []), None, concepts)
            self.codesystems[cs["url"]] = concepts
            self.languages[cs["url"]] = cs.get("language", DEFAULT_LANGUAGE)
            self.codesystem_resources[cs["url"]] = cs
        self.valuesets = {vs["url"]: vs for vs in package.of_type("ValueSet")}
        self.fragments: dict[str, dict[str, Concept]] = {}
        for vs in self.valuesets.values():
            for inc in vs.get("compose", {}).get("include", []):
                system = inc.get("system")
                if system and system not in self.codesystems:
                    for c in inc.get("concept", []):
                        self.fragments.setdefault(system, {})[c["code"]] = Concept(
                            system, c["code"], c.get("display"), tuple(c.get("designation", [])))
        self._expansions: dict[str, Expansion] = {}

    # -- expansion -------------------------------------------------------------------------
    def expand(self, url: str) -> Expansion | None:
        """The expansion of a ValueSet we ship, by canonical URL (`|version` ignored)."""
        url = url.split("|")[0]
        if url in self._expansions:
            return self._expansions[url]
        vs = self.valuesets.get(url)
        if vs is None:
            return None
        self._expansions[url] = Expansion(url)  # guards against cycles
        exp = self.expand_resource(vs)
        self._expansions[url] = exp
        return exp

    def expand_resource(self, vs: dict[str, Any]) -> Expansion:
        """Expand any ValueSet resource (ours, a stored one, or one posted to $expand)."""
        exp = Expansion(str(vs.get("url") or ""))
        compose = vs.get("compose") or {}
        for inc in compose.get("include", []):
            self._include(inc, exp)
        for exc in compose.get("exclude", []):
            removed = Expansion(exp.url)
            self._include(exc, removed)
            for key in removed.concepts:
                exp.concepts.pop(key, None)
        return exp

    def _include(self, inc: dict[str, Any], exp: Expansion) -> None:
        system = inc.get("system")
        for other in inc.get("valueSet", []):
            sub = self.expand(other)
            if sub:
                exp.concepts.update(sub.concepts)
                exp.open_systems |= sub.open_systems
        if not system:
            return
        known = self.codesystems.get(system)
        if inc.get("concept"):
            for c in inc["concept"]:
                base = self.lookup(system, c["code"])
                exp.concepts[(system, c["code"])] = Concept(
                    system, c["code"], c.get("display") or (base.display if base else None),
                    tuple(c.get("designation", [])) or (base.designations if base else ()),
                    base.definition if base else None, base.parent if base else None,
                    base.properties if base else ())
            return
        if known is None:
            exp.open_systems.add(system)
            return
        selected = list(known.values())
        for flt in inc.get("filter", []):
            selected = [c for c in selected if self._passes(system, c, flt)]
        for c in selected:
            exp.concepts[(system, c.code)] = c

    def _passes(self, system: str, concept: Concept, flt: dict[str, Any]) -> bool:
        op, value = flt.get("op"), flt.get("value")
        if flt.get("property") == "concept" and op in ("is-a", "descendent-of"):
            ancestors = self._ancestors(system, concept.code)
            return value in ancestors or (op == "is-a" and concept.code == value)
        return True

    def _ancestors(self, system: str, code: str) -> set[str]:
        out: set[str] = set()
        concepts = self.codesystems.get(system, {})
        current = concepts.get(code)
        while current is not None and current.parent and current.parent not in out:
            out.add(current.parent)
            current = concepts.get(current.parent)
        return out

    # -- lookup ----------------------------------------------------------------------------
    def is_complete(self, system: str | None) -> bool:
        """True for a CodeSystem we ship in full: a code it lacks is simply wrong."""
        return system in self.codesystems

    def lookup(self, system: str, code: str) -> Concept | None:
        """A concept of a CodeSystem we ship, or of a fragment our ValueSets list."""
        concept = self.codesystems.get(system, {}).get(code)
        if concept is not None:
            return concept
        fragment = self.fragments.get(system, {}).get(code)
        if fragment is not None and system in ICF_SYSTEMS and fragment.parent is None:
            parent = code[:-1]
            if len(parent) >= 4 and parent in self.fragments[system]:
                return Concept(fragment.system, fragment.code, fragment.display,
                               fragment.designations, fragment.definition, parent)
        return fragment

    def children(self, system: str, code: str) -> list[str]:
        if system in self.codesystems:
            return [c.code for c in self.codesystems[system].values() if c.parent == code]
        return [c for c in self.fragments.get(system, {}) if system in ICF_SYSTEMS
                and c[:-1] == code]

    def language_of(self, system: str) -> str:
        return self.languages.get(system, DEFAULT_LANGUAGE)

    def knows_system(self, system: str) -> bool:
        return system in self.codesystems or system in self.fragments

    # -- validation ------------------------------------------------------------------------
    def validate_in(self, exp: Expansion, system: str | None, code: str | None,
                    display: str | None = None) -> CodeCheck:
        """(result, message) of ValueSet/$validate-code against an expansion."""
        if not code:
            return CodeCheck(False, "No code was given")
        if not exp.contains(system, code):
            return CodeCheck(False, f"Code '{system or ''}|{code}' is not in ValueSet {exp.url}")
        concept = exp.find(system, code) or (self.lookup(system, code) if system else None)
        if system and self.is_complete(system) and self.lookup(system, code) is None:
            return CodeCheck(False, f"Code '{code}' is not defined in CodeSystem {system}")
        shown = concept.display if concept else None
        if display and concept and concept.display and not concept.knows_display(display):
            return CodeCheck(True, f"Display '{display}' differs from '{concept.display}'", shown)
        return CodeCheck(True, "ok", shown)

    def validate_code(self, url: str, system: str | None, code: str | None,
                      display: str | None = None) -> CodeCheck:
        exp = self.expand(url)
        if exp is None:
            return CodeCheck(False, f"ValueSet {url} is not known")
        return self.validate_in(exp, system, code, display)

    def validate_in_codesystem(self, system: str, code: str | None,
                               display: str | None = None) -> CodeCheck:
        """CodeSystem/$validate-code: complete systems answer definitely; fragments only for
        the codes they list (any other code is reported as unverifiable, not as wrong)."""
        if not code:
            return CodeCheck(False, "No code was given")
        concept = self.lookup(system, code)
        if concept is None:
            if self.is_complete(system):
                return CodeCheck(False, f"Code '{code}' is not defined in CodeSystem {system}")
            return CodeCheck(False, f"Code '{code}' is not among the concepts of {system} this "
                                    "server ships, so it cannot be verified here")
        if display and concept.display and not concept.knows_display(display):
            return CodeCheck(True, f"Display '{display}' differs from '{concept.display}'",
                             concept.display)
        return CodeCheck(True, "ok", concept.display)


def _walk(system: str, concepts: list[dict[str, Any]], parent: str | None,
          out: dict[str, Concept]) -> None:
    for c in concepts:
        out[c["code"]] = Concept(system, c["code"], c.get("display"),
                                 tuple(c.get("designation", [])), c.get("definition"), parent,
                                 tuple(c.get("property", [])))
        _walk(system, c.get("concept", []), c["code"], out)
