"""The conformance engine one server process holds: terminology, compiled profiles,
questionnaire validation, extraction and security labels, built once from `profiles/`.

It also provides the write checks the runtime runs on every create, update and transaction
entry (profile validation, QuestionnaireResponse validation, security labels), and the one
check that needs the store: a response to a Questionnaire that is not in our package but
stored on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..fhir.outcome import FhirError, Issue
from ..store.repository import ResourceStore
from ..store.search.parser import SearchParser
from .extract import Extractor
from .labels import SecurityLabeler
from .package import ConformancePackage
from .questionnaire import QuestionnaireValidator
from .terminology import Terminology
from .topics import topic_url
from .validator import ProfileValidator

DEFAULT_CANONICAL = "https://pgo-work.nl/fhir"
LABEL_RULES = Path("rules") / "security-labels.json"


def reject_errors(issues: list[Issue]) -> None:
    """Raise 422 with every error-level issue; warnings alone never refuse a write."""
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise FhirError(422, errors[0].code, errors[0].diagnostics, issues=errors)


@dataclass
class Conformance:
    package: ConformancePackage = field(repr=False)
    canonical_base: str
    terminology: Terminology
    validator: ProfileValidator
    questionnaires: QuestionnaireValidator
    labeler: SecurityLabeler
    extractor: Extractor

    # -- lookups ----------------------------------------------------------------------------
    def own(self, url: str) -> bool:
        """Whether a canonical URL lies under our canonical base."""
        return url.startswith(self.canonical_base.rstrip("/") + "/")

    def questionnaire(self, canonical: str) -> dict[str, Any] | None:
        """A Questionnaire of our package by canonical (`|version` ignored)."""
        return self.package.by_url(canonical) if self._is_questionnaire(canonical) else None

    def _is_questionnaire(self, canonical: str) -> bool:
        found = self.package.by_url(canonical)
        return found is not None and found.get("resourceType") == "Questionnaire"

    def published(self) -> list[dict[str, Any]]:
        """The resources of our own package (under our canonical base), as served by the API."""
        return [r for r in self.package.resources
                if isinstance(url := r.get("url") or topic_url(r), str) and self.own(url)
                and r.get("id")]

    # -- validation -------------------------------------------------------------------------
    def issues(self, resource: dict[str, Any], profiles: list[str] | None = None,
               questionnaire: dict[str, Any] | None = None) -> list[Issue]:
        """Every profile issue, and for a response every issue against its Questionnaire."""
        issues = self.validator.validate(resource, profiles)
        if resource.get("resourceType") == "QuestionnaireResponse":
            q = questionnaire or self.questionnaire(str(resource.get("questionnaire") or ""))
            if q is not None:
                issues += self.questionnaires.validate(resource, q)
        return issues

    # -- write checks -----------------------------------------------------------------------
    def check_profiles(self, resource: dict[str, Any]) -> dict[str, Any]:
        reject_errors(self.validator.validate(resource))
        return resource

    def check_response(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A response to one of our package's Questionnaires; others wait for the store check."""
        if resource.get("resourceType") == "QuestionnaireResponse":
            q = self.questionnaire(str(resource.get("questionnaire") or ""))
            if q is not None:
                reject_errors(self.questionnaires.validate(resource, q))
        return resource

    def apply_labels(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self.labeler.apply(resource)

    async def find_questionnaire(self, store: ResourceStore, parser: SearchParser,
                                 canonical: str) -> dict[str, Any] | None:
        """Ours first (the package is authoritative), then a Questionnaire stored here."""
        found = self.questionnaire(canonical)
        if found is not None:
            return found
        url, _, version = canonical.partition("|")
        query = [("url", url)] + ([("version", version)] if version else [])
        matches = await store.count_matches(parser.parse("Questionnaire", query), limit=1)
        return matches[0].json() if matches else None


class StoredQuestionnaireCheck:
    """Store check: validate a response against a Questionnaire stored on this server.

    A response to an unknown Questionnaire under our canonical base is refused (it claims to
    follow a form of ours that does not exist); one to a foreign, unknown form is accepted
    unchecked, because we cannot know that form.
    """

    def __init__(self, conformance: Conformance, parser: SearchParser) -> None:
        self.conformance = conformance
        self.parser = parser

    async def __call__(self, store: ResourceStore, resource: dict[str, Any]) -> dict[str, Any]:
        if resource.get("resourceType") != "QuestionnaireResponse":
            return resource
        canonical = resource.get("questionnaire")
        if not isinstance(canonical, str) or self.conformance.questionnaire(canonical):
            return resource  # none given, or ours: the synchronous check has done it
        q = await self.conformance.find_questionnaire(store, self.parser, canonical)
        if q is not None:
            reject_errors(self.conformance.questionnaires.validate(resource, q))
        elif self.conformance.own(canonical.split("|")[0]):
            raise FhirError(422, "not-found", f"Questionnaire {canonical} is not known",
                            "QuestionnaireResponse.questionnaire")
        return resource


def build_conformance(package: ConformancePackage, profiles_dir: Path) -> Conformance:
    """Compile everything once; a content bug in profiles/ fails here, at start-up."""
    canonical = DEFAULT_CANONICAL
    manifest = profiles_dir / "package.json"
    if manifest.exists():
        canonical = str(orjson.loads(manifest.read_bytes()).get("canonical") or canonical)
    terminology = Terminology(package)
    validator = ProfileValidator(package.of_type("StructureDefinition"), terminology, canonical)
    compartment = package.patient_compartment or {}
    in_compartment = frozenset(r["code"] for r in compartment.get("resource", []) if r.get("param"))
    listed = frozenset(r["code"] for r in compartment.get("resource", []) if r.get("code"))
    rules_path = profiles_dir / LABEL_RULES
    rules: dict[str, Any] = orjson.loads(rules_path.read_bytes()) if rules_path.exists() else {
        "system": f"{canonical}/CodeSystem/data-category", "rules": []}
    categories = terminology.codesystems.get(str(rules["system"]))
    displays = {code: c.display or code for code, c in categories.items()} if categories else None
    labeler = SecurityLabeler(rules, in_compartment, displays, listed)
    return Conformance(package, canonical, terminology, validator,
                       QuestionnaireValidator(terminology), labeler, Extractor(validator))
