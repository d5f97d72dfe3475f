"""SubscriptionTopics from `profiles/subscriptions/`, in the R4 representation of the
Subscriptions Backport IG: a `Basic` whose code is `fhir-types#SubscriptionTopic` and whose
content is the R5 SubscriptionTopic as cross-version extensions.

The topics are data: which resource types trigger them, on which interactions, under which
query (`queryCriteria.current`, a search string the store compiles like any search), and what a
subscriber may filter by (`canFilterBy`). Nothing about a topic is written in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .package import ConformancePackage

X = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
FHIR_TYPES = "http://hl7.org/fhir/fhir-types"
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Trigger:
    resource_type: str
    interactions: frozenset[str]
    current: str | None
    """`queryCriteria.current`: search parameters (`code=...`) the new version must match."""


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    triggers: tuple[Trigger, ...]
    filters: frozenset[tuple[str, str]]
    """(resource type, search parameter) pairs a subscriber may filter by."""

    def trigger_for(self, resource_type: str) -> Trigger | None:
        return next((t for t in self.triggers if t.resource_type == resource_type), None)

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(t.resource_type for t in self.triggers)


def is_topic(resource: dict[str, Any]) -> bool:
    codings = (resource.get("code") or {}).get("coding") or []
    return resource.get("resourceType") == "Basic" and any(
        c.get("system") == FHIR_TYPES and c.get("code") == "SubscriptionTopic" for c in codings)


def _ext(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension", []) if e.get("url") == url]


def _value(element: dict[str, Any], url: str) -> Any:
    for e in _ext(element, url):
        for k, v in e.items():
            if k.startswith("value"):
                return v
    return None


def topic_url(resource: dict[str, Any]) -> str | None:
    """The canonical URL of a topic in its Basic form."""
    url = _value(resource, f"{X}.url")
    return url if is_topic(resource) and isinstance(url, str) else None


def _type_of(uri: str) -> str:
    return uri.removeprefix(CORE_SD)


def parse_topic(resource: dict[str, Any]) -> Topic:
    triggers = []
    for t in _ext(resource, f"{X}.resourceTrigger"):
        query = next(iter(_ext(t, "queryCriteria")), None)
        triggers.append(Trigger(
            _type_of(str(_value(t, "resource"))),
            frozenset(str(e.get("valueCode")) for e in _ext(t, "supportedInteraction")),
            _value(query, "current") if query is not None else None))
    filters = frozenset((_type_of(str(_value(f, "resource"))), str(_value(f, "filterParameter")))
                        for f in _ext(resource, f"{X}.canFilterBy"))
    return Topic(str(topic_url(resource)), str(_value(resource, f"{X}.title") or ""),
                 tuple(triggers), filters)


def load_topics(package: ConformancePackage) -> dict[str, Topic]:
    """canonical URL -> topic, for every topic in the package."""
    return {t.url: t for t in (parse_topic(r) for r in package.of_type("Basic") if is_topic(r))}
