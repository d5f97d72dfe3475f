"""Who may choose the id of a new resource (update as create, R4 3.1.0.4.2).

Whoever may create under an id of their choice can tell a taken id from a free one, and a
taken id they may not see is someone's hidden resource. So only the callers the operator
trusts with that (`PGO_WORK_CLIENT_IDS_FOR`, roles; by default the operator's own `service`
clients, who see everything anyway) may choose ids; everyone else creates with POST and gets
the same 405 for a PUT on an id they cannot see, whether it is free or hidden.
"""

from __future__ import annotations

from ..fhir.outcome import FhirError
from ..store.access import PolicyBase, WriteIntent
from .principal import Principal


def roles_of(setting: str) -> frozenset[str]:
    """The roles listed in `PGO_WORK_CLIENT_IDS_FOR` (comma-separated)."""
    return frozenset(r.strip() for r in setting.split(",") if r.strip())


class ClientIdRule(PolicyBase):
    """Refuses a create under a client-chosen id unless the caller's role may choose ids."""

    def __init__(self, principal: Principal, allowed_roles: frozenset[str]) -> None:
        self.allowed = principal.role in allowed_roles and not principal.is_patient

    def check_write(self, intent: WriteIntent) -> None:
        if intent.action != "create" or not intent.client_id or self.allowed:
            return
        # The text is the same for a free id and for one the caller may not see (the spec's
        # answer when a server does not allow client-defined ids: 405).
        rid = (intent.resource or {}).get("id")
        raise FhirError(405, "not-supported",
                        f"{intent.resource_type}/{rid} is not known, and this "
                        "server assigns the ids of new resources: create it with POST",
                        expression=[f"{intent.resource_type}.id"],
                        headers={"Allow": "GET, HEAD"})
