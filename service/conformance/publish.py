"""Serve our conformance package through the API: write its resources into the store.

Called at application start-up (and by `pgo-work seed-demo`), so `/fhir/StructureDefinition`,
`/fhir/ValueSet`, `/fhir/CodeSystem`, `/fhir/Questionnaire`, `/fhir/SearchParameter` and
`/fhir/OperationDefinition` return exactly what the server validates with. Only resources under
our canonical base are published (the FHIR core SearchParameters we index with are HL7's to
publish). Idempotent: a resource whose content is unchanged is left alone, so restarts add no
versions; a changed package file becomes a new version. Every resource passes the same write
checks as any other write, which is how we know each one validates as FHIR.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from ..fhir.outcome import FhirError
from ..store.access import SystemAccess

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


async def publish(rt: Runtime) -> dict[str, int]:
    """Counts of created, updated and unchanged resources; raises on a database error."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    if rt.conformance is None:
        return counts
    async with rt.store(SystemAccess(), write=True) as store:
        for resource in rt.conformance.published():
            rtype, rid = resource["resourceType"], resource["id"]
            checked = await rt.check_write_in(store, resource)
            if await store.exists(rtype, rid):
                current = await store.read(rtype, rid)
                if _body(current.json()) == _body(checked):
                    counts["unchanged"] += 1
                    continue
            _, created = await store.update(checked, rid)
            counts["created" if created else "updated"] += 1
    return counts


async def publish_at_startup(rt: Runtime) -> None:
    """Start-up must not fail because another instance publishes at the same moment or the
    database is not migrated yet (`serve --no-migrate`): log it, serve anyway."""
    try:
        counts = await publish(rt)
    except (FhirError, SQLAlchemyError) as exc:
        log.warning("conformance resources were not published: %s", exc)
        return
    log.info("conformance resources: %s", ", ".join(f"{v} {k}" for k, v in counts.items()))
