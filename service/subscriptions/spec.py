"""A Subscription resource as the Backport IG's R4 profile writes it, checked and read into
what the server acts on (`Spec`).

R4 mapping (Backport IG): `criteria` is the topic's canonical URL; its `_criteria` carries the
filters (`backport-filter-criteria`, `Observation?patient=Patient/x`); `channel.type` the
channel (only `rest-hook` here); `channel._payload` the content (`backport-payload-content`:
`empty`, `id-only`, `full-resource`); channel extensions the heartbeat period, timeout and
maximum events per notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..conformance.topics import Topic
from ..fhir.outcome import FhirError, bad_request
from ..store.search.parser import SearchParser

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER = BACKPORT + "backport-filter-criteria"
PAYLOAD = BACKPORT + "backport-payload-content"
HEARTBEAT = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
PROFILE = BACKPORT + "backport-subscription"
CONTENTS = ("empty", "id-only", "full-resource")
STATUSES = ("requested", "active", "error", "off")
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 60
DEFAULT_MAX_COUNT = 20
MAX_MAX_COUNT = 100


@dataclass(frozen=True)
class Spec:
    topic: str
    filters: dict[str, list[tuple[str, str]]]
    """resource type -> search parameters every event's focus of that type must match."""
    endpoint: str
    headers: tuple[str, ...]
    content: str
    heartbeat_seconds: int | None
    timeout_seconds: int
    max_count: int
    status: str


def invalid(diagnostics: str, path: str) -> FhirError:
    return FhirError(422, "invalid", diagnostics, expression=[path])


def _ext_value(element: Any, url: str) -> Any:
    if not isinstance(element, dict):
        return None
    for e in element.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


def resource_object(body: Any) -> dict[str, Any]:
    """The body as a resource; 400 when it is not a JSON object at all (as for every type)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a FHIR resource (a JSON object)")
    return body


def read_spec(resource: Any, topics: dict[str, Topic], parser: SearchParser) -> Spec:
    """The checked Subscription; 422 naming the element when it cannot be served (400 when the
    body is not a JSON object at all, as for every other resource)."""
    resource = resource_object(resource)
    if resource.get("resourceType") != "Subscription":
        raise invalid("The body must be a Subscription", "Subscription")
    topic_url = resource.get("criteria")
    if not isinstance(topic_url, str) or not topic_url:
        raise invalid("Subscription.criteria must name a SubscriptionTopic (its canonical URL)",
                      "Subscription.criteria")
    topic = topics.get(topic_url.split("|")[0])
    if topic is None:
        raise invalid(f"Unknown SubscriptionTopic '{topic_url}'; the topics this server "
                      f"offers: {', '.join(sorted(topics))}", "Subscription.criteria")
    filters = _filters(resource.get("_criteria"), topic, parser)
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise invalid("Subscription.channel is required", "Subscription.channel")
    ctype = channel.get("type")
    if ctype != "rest-hook":
        raise invalid(f"Channel type '{ctype}' is not supported: this server delivers by "
                      "rest-hook only", "Subscription.channel.type")
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid("Subscription.channel.endpoint must be an http or https URL",
                      "Subscription.channel.endpoint")
    headers = channel.get("header") or []
    if not isinstance(headers, list) or not all(
            isinstance(h, str) and ":" in h and "\n" not in h and "\r" not in h for h in headers):
        raise invalid("Subscription.channel.header entries must be 'Name: value' strings",
                      "Subscription.channel.header")
    payload = channel.get("payload")
    if payload is not None and payload not in ("application/fhir+json", "application/json"):
        raise invalid(f"Payload type '{payload}' is not supported: application/fhir+json",
                      "Subscription.channel.payload")
    content = _ext_value(channel.get("_payload"), PAYLOAD) or "id-only"
    if content not in CONTENTS:
        raise invalid(f"Payload content '{content}' is not one of {', '.join(CONTENTS)}",
                      "Subscription.channel.payload.extension")
    heartbeat = _number(channel, HEARTBEAT, None, 1, 86400, "heartbeat period")
    timeout = _number(channel, TIMEOUT, DEFAULT_TIMEOUT, 1, MAX_TIMEOUT, "timeout")
    max_count = _number(channel, MAX_COUNT, DEFAULT_MAX_COUNT, 1, MAX_MAX_COUNT, "max count")
    status = resource.get("status") or "requested"
    if status not in STATUSES:
        raise invalid(f"Subscription.status '{status}' is not one of {', '.join(STATUSES)}",
                      "Subscription.status")
    return Spec(topic.url, filters, str(endpoint), tuple(headers), content, heartbeat,
                int(timeout or DEFAULT_TIMEOUT), int(max_count or DEFAULT_MAX_COUNT), status)


def _number(channel: dict[str, Any], url: str, default: int | None, low: int, high: int,
            what: str) -> int | None:
    value = _ext_value(channel, url)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"The {what} must be a whole number from {low} to {high}",
                      "Subscription.channel.extension")
    return value


def _filters(element: Any, topic: Topic, parser: SearchParser) -> dict[str, list[tuple[str, str]]]:
    """Each `backport-filter-criteria` as `Type?param=value&...`: the type one of the topic's
    triggers, every parameter one the topic can filter by, the whole a valid search."""
    out: dict[str, list[tuple[str, str]]] = {}
    extensions = element.get("extension") if isinstance(element, dict) else None
    for i, e in enumerate(extensions or []):
        if not isinstance(e, dict) or e.get("url") != FILTER:
            continue
        path = f"Subscription.criteria.extension[{i}]"
        text = e.get("valueString")
        if not isinstance(text, str) or not text:
            raise invalid("A filter criteria extension needs a valueString", path)
        rtype, sep, query = text.partition("?")
        if not sep:
            if len(topic.resource_types) != 1:
                raise invalid("A filter must start with its resource type "
                              "(`Observation?patient=...`) on a topic with several", path)
            rtype, query = next(iter(topic.resource_types)), text
        if rtype not in topic.resource_types:
            raise invalid(f"Topic {topic.url} is not triggered by {rtype}", path)
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs:
            raise invalid(f"Filter '{text}' has no parameters", path)
        for name, _ in pairs:
            if (rtype, name.split(":", 1)[0]) not in topic.filters:
                allowed = sorted(p for t, p in topic.filters if t == rtype)
                raise invalid(f"Topic {topic.url} cannot filter {rtype} by '{name}' "
                              f"(it can by: {', '.join(allowed)})", path)
        try:
            parser.parse(rtype, pairs)
        except FhirError as exc:
            raise invalid(f"Filter '{text}': {exc}", path) from exc
        out.setdefault(rtype, []).extend(pairs)
    return out


def outside_subscription_endpoint(resource: dict[str, Any]) -> dict[str, Any]:
    """A write check: a Subscription is written through `/fhir/Subscription` only (it belongs
    to its creator and is kept apart from the patients' resources), never through a Bundle or
    the generic resource interactions."""
    if resource.get("resourceType") == "Subscription":
        raise FhirError(422, "not-supported", "A Subscription is created with POST "
                        "[base]/Subscription (or changed with PUT [base]/Subscription/[id]), "
                        "not in a Bundle", expression=["Subscription"])
    return resource
