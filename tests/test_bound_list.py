"""A list bound as one parameter: long lists (past both databases' limit of 32,767 parameters
per statement) and values with characters that need quoting match exactly."""

from __future__ import annotations

import asyncio

from sqlalchemy import literal, select

from service.store.bound_list import in_bound_list
from service.store.database import create_engine

TRICKY = ['with "quotes"', "back\\slash", "comma,separated", "{braces}", "ünïcode", ""]


def _matches(url: str, value: str, values: list[str]) -> bool:
    async def run() -> bool:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                stmt = select(literal(1)).where(in_bound_list(literal(value), "values"))
                return (await conn.execute(stmt, {"values": values})).first() is not None
        finally:
            await engine.dispose()
    return asyncio.run(run())


def test_membership_in_a_long_list_with_values_that_need_quoting(database_url: str) -> None:
    values = [f"patient-{i}" for i in range(40_000)] + TRICKY
    for value in ("patient-0", "patient-39999", *TRICKY):
        assert _matches(database_url, value, values), value
    for value in ("patient-40000", "Patient-1", "quotes", "back\\\\slash", " "):
        assert not _matches(database_url, value, values), value
    assert not _matches(database_url, "patient-1", [])
