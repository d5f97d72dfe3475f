"""The CapabilityStatement, generated from the registries that route and search.

It lists exactly the search parameters the store indexes and the interactions the router
serves, so it cannot claim what is not implemented.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..access.discovery import capability_security
from ..fhir import dates
from ..runtime import Runtime

INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance",
                "history-type", "create", "search-type"]


def build(rt: Runtime) -> dict[str, Any]:
    resources = []
    with_ops = {t for op in rt.operations.all() for t in (op.types or ())}
    for rtype in sorted(set(rt.registry.types_with_params()) | with_ops):
        params = rt.registry.for_type(rtype)
        resources.append({
            "type": rtype,
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            # Clients do not choose ids (`service.access.client_ids`): the few roles the
            # operator allows are not what a client reading this can count on.
            "updateCreate": False,
            "conditionalCreate": True,
            "conditionalRead": "modified-since",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": sorted({f"{rtype}:{p.code}" for p in params.values()
                                     if p.type == "reference"}),
            "searchRevInclude": sorted(_revincludes(rt, rtype)),
            "searchParam": [
                {"name": p.code, "definition": p.url, "type": p.type,
                 **({"documentation": p.description} if p.description else {})}
                for p in sorted(params.values(), key=lambda p: p.code)
            ],
            **({"operation": ops} if (ops := _operations(rt, rtype)) else {}),
        })
    resources.append(_subscription(rt))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dates.to_instant(dates.utcnow()),
        "publisher": "pgo-work",
        "kind": "instance",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "software": {"name": "pgo-work", "version": __version__},
        "implementation": {"description": "pgo-work FHIR server", "url": rt.base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "security": capability_security(rt.settings),
            "documentation": "The server assigns the ids of new resources: create with POST "
                             "(a PUT on an id that is not there, or not yours to see, is 405).",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}, {"code": "search-system"}],
            **({"operation": ops} if (ops := _operations(rt, None)) else {}),
            "searchParam": [
                {"name": "_id", "type": "token",
                 "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
                {"name": "_lastUpdated", "type": "date",
                 "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
            ],
        }],
    }


def _revincludes(rt: Runtime, target: str) -> set[str]:
    out = set()
    for source in rt.registry.types_with_params():
        for p in rt.registry.for_type(source).values():
            if p.type == "reference" and (not p.targets or target in p.targets):
                out.add(f"{source}:{p.code}")
    return out


def _operations(rt: Runtime, rtype: str | None) -> list[dict[str, Any]]:
    """The registered operations on `rtype` (None: those on every type, listed once at the
    server level), each with the OperationDefinition it implements: the registry that routes
    `$name` is the one listed, so nothing is claimed that is not served."""
    out: dict[str, dict[str, Any]] = {}
    for op in rt.operations.all():
        if op.definition is None:
            continue
        if (rtype is None and op.types is None) or (rtype is not None and op.types is not None
                                                     and rtype in op.types):
            name = op.listed_as or op.name
            out.setdefault(name, {"name": name, "definition": op.definition})
    return [out[name] for name in sorted(out)]


BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"


def _subscription(rt: Runtime) -> dict[str, Any]:
    """Subscription as the Backport IG asks a server to declare it: the topics it offers (one
    `capabilitystatement-subscriptiontopic-canonical` extension each), the profile, and the
    `$status` and `$events` operations (`service.rest.subscription_routes`)."""
    return {
        "type": "Subscription",
        "extension": [{"url": f"{BACKPORT}/StructureDefinition/"
                              "capabilitystatement-subscriptiontopic-canonical",
                       "valueCanonical": url} for url in sorted(rt.topics)],
        "supportedProfile": [f"{BACKPORT}/StructureDefinition/backport-subscription"],
        "documentation": "Topic-based (R4 Subscriptions Backport IG), channel rest-hook, payload "
                         "empty, id-only or full-resource. A Subscription is its creator's: only "
                         "they (and the operator) can read, search, update or delete it, and "
                         "each event is judged by the creator's access at the moment it happens. "
                         "The topics are served as Basic resources "
                         "(`Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic`).",
        "interaction": [{"code": c} for c in ("read", "create", "update", "delete",
                                              "search-type")],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "operation": [
            {"name": "status",
             "definition": f"{BACKPORT}/OperationDefinition/backport-subscription-status"},
            {"name": "events",
             "definition": f"{BACKPORT}/OperationDefinition/backport-subscription-events"},
        ],
    }
