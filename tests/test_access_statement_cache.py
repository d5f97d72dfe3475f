"""Access predicates are compiled once per plan and found again by a key of their own
(`keyed_clause`), so SQLAlchemy's statement cache never re-derives them. Two callers whose
consents differ only in a constant (which resource class, which data category) get statements of
the same shape: each must keep getting their own, however their requests interleave."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .consent_helpers import grant
from .consent_world import Actors, Record, entries


def test_callers_whose_consents_differ_in_one_constant_never_share_a_compiled_statement(
        anon: TestClient, client: TestClient, actors: Actors, record: Record, tag: str) -> None:
    # Same shape, one constant apart: the oncologist may see Conditions, the labour expert
    # Observations; the insurance physician work context, the employer Observations (of which the
    # employer's fixed allowlist leaves work context only).
    grant(client, record.patient, [actors.permit("oncologist", types=["Condition"]),
                                   actors.permit("labour-expert", types=["Observation"]),
                                   actors.permit("insurance-physician", labels=["work-context"]),
                                   actors.permit("employer", types=["Observation"])],
          f"{tag}-consent")
    sees = {"oncologist": {"medical"},
            "labour-expert": {"work-context", "functional-capacity", "absence-benefits",
                              "self-reported-health"},
            "insurance-physician": {"work-context"},
            "employer": {"work-context"}}
    for _ in range(3):  # interleaved, so every statement is also served from the cache
        for role, categories in sees.items():
            headers = actors.headers[role]
            for category in record.ids:
                read = anon.get(f"/fhir/{record.ref(category)}", headers=headers)
                assert read.status_code == (200 if category in categories else 404), (role, category)
            for rtype in ("Observation", "Condition"):
                found = anon.get(f"/fhir/{rtype}", params={"_tag": record.tag_query,
                                                          "_include": f"{rtype}:subject"},
                                 headers=headers)
                assert found.status_code == 200, found.text
                got = {record.key_of(e["resourceType"], e["id"]) for e in entries(found.json())}
                wanted = {c for c in categories if record.ref(c).startswith(f"{rtype}/")}
                assert got - {"patient"} == wanted, (role, rtype, got)
                assert found.json()["total"] == len(wanted), (role, rtype)
