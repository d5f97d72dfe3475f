"""Migration 0009 labels the resources already stored whose free text was not written for the
employer, from every stored version (labels are the union over versions)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from service.store.database import create_engine
from service.store.migrate import upgrade

from .conftest import DATABASES, make_database

LABEL = ("https://pgo-work.nl/fhir/CodeSystem/content-label", "clinical-text")
EMPLOYER_TEXT = "https://pgo-work.nl/fhir/StructureDefinition/employer-text"


def _plan(rid: str, **extra: object) -> str:
    return orjson.dumps({"resourceType": "CarePlan", "id": rid, "status": "active",
                         "intent": "plan", "subject": {"reference": "Patient/p"}, **extra}).decode()


VERSIONS = {
    # resource id -> contents of its versions, oldest first
    "old-note": [_plan("old-note", note=[{"text": "de vermoeidheid nam toe"}]), _plan("old-note")],
    "for-employer": [_plan("for-employer", extension=[{"url": EMPLOYER_TEXT,
                                                       "valueString": "Werkt 3 ochtenden."}])],
    "coded": [_plan("coded")],
}


def _run(url: str, statements: list[tuple[str, dict[str, object]]]) -> list[list[tuple[object, ...]]]:
    async def run() -> list[list[tuple[object, ...]]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                out = []
                for sql, params in statements:
                    result = await conn.execute(text(sql), params)
                    out.append([tuple(r) for r in result.all()] if result.returns_rows else [])
                return out
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("kind", DATABASES)
def test_stored_clinical_free_text_gets_the_label(kind: str, tmp_path: Path) -> None:
    url, drop = make_database(kind, tmp_path)
    try:
        upgrade(url, "0008")
        inserts: list[tuple[str, dict[str, object]]] = []
        for n, (rid, versions) in enumerate(VERSIONS.items(), start=1):
            inserts.append((
                "INSERT INTO resource (pk, resource_type, id, version_id, last_updated, deleted, "
                "content) VALUES (:pk, 'CarePlan', :id, :v, '2026-12-01 10:00:00', :f, :c)",
                {"pk": n, "id": rid, "v": len(versions), "f": False, "c": versions[-1]}))
            for v, content in enumerate(versions, start=1):
                inserts.append((
                    "INSERT INTO resource_version (resource_pk, resource_type, id, version_id, "
                    "last_updated, method, content) VALUES (:pk, 'CarePlan', :id, :v, "
                    "'2026-12-01 10:00:00', 'PUT', :c)", {"pk": n, "id": rid, "v": v, "c": content}))
        _run(url, inserts)
        upgrade(url)
        [rows] = _run(url, [("SELECT r.id FROM resource_label l JOIN resource r ON r.pk = "
                             "l.resource_pk WHERE l.system = :s AND l.code = :c",
                             {"s": LABEL[0], "c": LABEL[1]})])
        assert {r[0] for r in rows} == {"old-note"}
    finally:
        drop()
