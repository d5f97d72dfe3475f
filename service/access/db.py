"""Transactions for the authorization server's own tables.

The same rule as the store's: one connection and one transaction per unit of work, committed
on success and rolled back on any error; writing transactions take SQLite's write lock at
BEGIN so concurrent token requests queue instead of failing halfway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..store.database import WRITE_OPTION


@asynccontextmanager
async def transaction(engine: AsyncEngine, write: bool = False) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        if write:
            conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            yield conn
