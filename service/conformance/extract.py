"""SDC observation-based extraction, following the pgo-work convention.

The convention is data: it is the description of
`StructureDefinition/extract-profile`. In short: an item with `observationExtract` true and our
`extract-profile` extension gives one Observation of that profile (a question: one per answer,
the answer as value; a group: child items with a `definition` fill that element, other coded
children become components); extracted items nested under a panel whose profile has
`hasMember` become its members; status, subject, performer, effective[x] and required pattern
elements (such as category) come from the response and the profile. Unanswered or disabled
items produce nothing, and a panel that requires members is dropped when it has none. A
question with the `score-bands` extension (a CodeSystem whose concepts carry the integer
properties `minScore` and `maxScore`) also gets the band its integer answer falls in as
`Observation.interpretation`: the scoring of a single-item measure is data, not code.

This module is pure: it builds Observations; the $extract operation gives them ids, checks them
against their profiles and stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .elements import repeats
from .questionnaire import all_items
from .validator import ConformanceError, Profile, ProfileValidator

OBSERVATION_EXTRACT = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract"
EXTRACT_PROFILE_PATH = "/StructureDefinition/extract-profile"
SCORE_BANDS_PATH = "/StructureDefinition/score-bands"


class ExtractError(ValueError):
    """The response cannot be extracted (no subject, an item whose target we cannot fill)."""


@dataclass
class ExtractedObservation:
    key: str
    """Stable within one response version: linkId, plus `#n` for the n-th occurrence."""
    link_id: str
    profile: Profile
    resource: dict[str, Any]
    members: list[str] = field(default_factory=list)
    """Keys of the Observations this one lists in hasMember."""


class Extractor:
    def __init__(self, validator: ProfileValidator) -> None:
        self.validator = validator
        self.extract_profile_url = validator.canonical_base.rstrip("/") + EXTRACT_PROFILE_PATH

    def target_profile(self, item: dict[str, Any]) -> Profile | None:
        """The profile an item extracts to, or None when the item is not extracted."""
        ext = {e.get("url"): e for e in item.get("extension", []) if isinstance(e, dict)}
        if not ext.get(OBSERVATION_EXTRACT, {}).get("valueBoolean"):
            return None
        url = ext.get(self.extract_profile_url, {}).get("valueCanonical")
        profile = self.validator.profile(url) if isinstance(url, str) else None
        if profile is None:
            raise ConformanceError(f"item '{item.get('linkId')}' extracts to unknown profile {url}")
        return profile

    def extract(self, response: dict[str, Any], questionnaire: dict[str, Any]) -> list[ExtractedObservation]:
        if not isinstance(response.get("subject"), dict):
            raise ExtractError("The response has no subject, so extracted Observations would "
                               "belong to no one")
        qitems = {str(i.get("linkId")): i for i in all_items(questionnaire.get("item", []))}
        run = _Run(self, response, qitems)
        for ritem in response.get("item") or []:
            run.item(ritem, None)
        out = [o for o in run.out if not (_requires_members(o.profile) and not o.members)]
        kept = {o.key for o in out}
        for o in out:
            o.members = [m for m in o.members if m in kept]
        return out


class _Run:
    """One extraction: the response, its item definitions, and what has been built so far."""

    def __init__(self, extractor: Extractor, response: dict[str, Any],
                 qitems: dict[str, dict[str, Any]]) -> None:
        self.x = extractor
        self.response = response
        self.qitems = qitems
        self.out: list[ExtractedObservation] = []
        self.counts: dict[str, int] = {}

    def _key(self, link_id: str) -> str:
        n = self.counts.get(link_id, 0)
        self.counts[link_id] = n + 1
        return link_id if n == 0 else f"{link_id}#{n}"

    def item(self, ritem: dict[str, Any], parent: ExtractedObservation | None) -> None:
        q = self.qitems.get(str(ritem.get("linkId")))
        if q is None:
            return
        profile = self.x.target_profile(q)
        if profile is None:
            for child in _nested(ritem):
                self.item(child, parent)
            return
        if q.get("type") == "group":
            obs = self._new(q, profile, parent)
            self._fill(obs, ritem.get("item") or [])
            self._finish(obs)
            return
        for answer in ritem.get("answer") or []:
            obs = self._new(q, profile, parent)
            self._set(obs, "Observation.value[x]", answer, q)
            self._score(obs, answer, q)
            self._finish(obs)

    def _score(self, obs: ExtractedObservation, answer: dict[str, Any], q: dict[str, Any]) -> None:
        """The band of an integer answer (extension score-bands) as the interpretation."""
        url = self.x.validator.canonical_base.rstrip("/") + SCORE_BANDS_PATH
        system = next((e.get("valueCanonical") for e in q.get("extension", [])
                       if isinstance(e, dict) and e.get("url") == url), None)
        value = answer.get("valueInteger")
        if not isinstance(system, str) or not isinstance(value, int):
            return
        concepts = self.x.validator.terminology.codesystems.get(system, {})
        for concept in concepts.values():
            bounds = {p.get("code"): p.get("valueInteger") for p in concept.properties}
            low, high = bounds.get("minScore"), bounds.get("maxScore")
            if isinstance(low, int) and isinstance(high, int) and low <= value <= high:
                obs.resource["interpretation"] = [{"coding": [{
                    "system": system, "code": concept.code, "display": concept.display}]}]
                return

    def _new(self, q: dict[str, Any], profile: Profile,
             parent: ExtractedObservation | None) -> ExtractedObservation:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "meta": {"profile": [profile.url]},
            "status": "final",
            "code": {"coding": list(q.get("code") or [])},
            "subject": self.response["subject"],
        }
        if isinstance(self.response.get("author"), dict):
            resource["performer"] = [self.response["author"]]
        obs = ExtractedObservation(self._key(str(q["linkId"])), str(q["linkId"]), profile, resource)
        self.out.append(obs)
        if parent is not None and _has_members(parent.profile):
            parent.members.append(obs.key)
        return obs

    def _fill(self, obs: ExtractedObservation, ritems: list[dict[str, Any]]) -> None:
        for ritem in ritems:
            q = self.qitems.get(str(ritem.get("linkId")))
            if q is None:
                continue
            if self.x.target_profile(q) is not None:
                self.item(ritem, obs)
                continue
            if q.get("type") == "group":
                self._fill(obs, ritem.get("item") or [])
                continue
            for answer in ritem.get("answer") or []:
                if q.get("definition"):
                    self._set(obs, str(q["definition"]).split("#", 1)[-1], answer, q)
                elif q.get("code"):
                    converted = _value(answer, q)
                    if converted:
                        obs.resource.setdefault("component", []).append(
                            {"code": {"coding": list(q["code"])}, converted[0]: converted[1]})

    def _set(self, obs: ExtractedObservation, element: str, answer: dict[str, Any],
             q: dict[str, Any]) -> None:
        converted = _value(answer, q)
        if converted is None:
            return
        key, value = converted
        res = obs.resource
        if element == "Observation.value[x]":
            types = _types(obs.profile, element)
            if types == ("string",) and isinstance(value, dict) and "text" in value:
                res["valueString"] = value["text"]
            else:
                res[key] = value
        elif element == "Observation.effective[x]":
            if "dateTime" in (_types(obs.profile, element) or ("dateTime",)):
                res["effectiveDateTime"] = value
            else:
                res.setdefault("effectivePeriod", {})["start"] = value
        elif element in ("Observation.effective[x].start", "Observation.effective[x].end"):
            res.setdefault("effectivePeriod", {})[element.rsplit(".", 1)[1]] = value
        elif element == "Observation.note.text":
            res.setdefault("note", []).append({"text": value})
        else:
            raise ConformanceError(f"item '{q.get('linkId')}': extraction to {element} is not "
                                   "part of the convention")

    def _finish(self, obs: ExtractedObservation) -> None:
        res = obs.resource
        authored = self.response.get("authored")
        if authored and not any(k.startswith("effective") for k in res):
            if _types(obs.profile, "Observation.effective[x]") == ("Period",):
                res["effectivePeriod"] = {"start": authored}
            else:
                res["effectiveDateTime"] = authored
        for rule in obs.profile.rules:
            if rule.parent or rule.name == "code" or rule.min < 1 or not rule.pattern:
                continue
            if rule.name not in res:
                value = rule.pattern[1]
                res[rule.name] = [value] if repeats("Observation", rule.name) else value


def _nested(ritem: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(ritem.get("item") or [])
    for answer in ritem.get("answer") or []:
        out += answer.get("item") or []
    return out


def _value(answer: dict[str, Any], q: dict[str, Any]) -> tuple[str, Any] | None:
    """An answer as an Observation value[x] (Coding -> CodeableConcept, date -> dateTime,
    an open-choice string -> CodeableConcept.text)."""
    found = next(((k, v) for k, v in answer.items() if k.startswith("value")), None)
    if found is None:
        return None
    key, value = found
    if key == "valueCoding":
        return "valueCodeableConcept", {"coding": [value]}
    if key == "valueString" and q.get("type") == "open-choice":
        return "valueCodeableConcept", {"text": value}
    if key == "valueDate":
        return "valueDateTime", value
    if key == "valueUri":
        return "valueString", value
    if key in ("valueReference", "valueAttachment"):
        return None
    return key, value


def _types(profile: Profile, path: str) -> tuple[str, ...]:
    return next((r.types for r in profile.rules if r.path == path and r.types), ())


def _has_members(profile: Profile) -> bool:
    return any(r.path == "Observation.hasMember" for r in profile.rules)


def _requires_members(profile: Profile) -> bool:
    return any(r.path == "Observation.hasMember" and r.min >= 1 for r in profile.rules)
