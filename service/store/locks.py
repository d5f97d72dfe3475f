"""Locks that make a conditional write's match count and its write one atomic step.

A conditional create (`If-None-Exist`), update (`PUT Type?criteria`) or delete counts the
matches of its criteria and then writes. Under PostgreSQL's READ COMMITTED two such requests
with the same criteria both count zero and both create: a duplicate, after which every
conditional write on those criteria answers 412. So each takes a transaction-scoped advisory
lock on (resource type, normalised criteria) before it counts: the second waits for the first's
commit, and its count (a new statement, so a new READ COMMITTED snapshot) then sees the first's
resource. The lock is released with the transaction.

What this serialises is conditional operations on the same criteria, which is what the
specification promises atomicity for. A plain create of a resource that would match, or a
conditional write whose criteria are written differently (`identifier=X` against
`identifier=sys|X`), takes no lock or another one and is not serialised with it.

SQLite needs no lock: a writing transaction begins with `BEGIN IMMEDIATE`, so writers run one
at a time and each sees the commits of those before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Criteria = Sequence[tuple[str, str]]

# Parameters that change how a result is shown, not which resources match.
_PRESENTATION = frozenset({"_format", "_pretty", "_summary", "_elements", "_count", "_sort",
                           "_total", "_include", "_revinclude"})


def condition_key(resource_type: str, criteria: Criteria) -> int:
    """A signed 64-bit key for (type, criteria): the same for the same criteria in any order."""
    pairs = sorted((name, value) for name, value in criteria if name not in _PRESENTATION)
    canonical = resource_type + "?" + "&".join(f"{n}={v}" for n, v in pairs)
    digest = hashlib.sha256(canonical.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_conditions(conn: AsyncConnection, keys: Iterable[int]) -> None:
    """Take the advisory locks for `keys` in ascending order (two transactions that need the
    same locks then cannot deadlock on them); held until the transaction ends. A no-op except
    on PostgreSQL. Taking a lock this transaction already holds returns at once."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
