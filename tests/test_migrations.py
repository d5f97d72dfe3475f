"""Alembic is the only source of the schema: it builds and removes it on both databases,
and what it builds is exactly what the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.store.database import create_engine
from service.store.migrate import downgrade, upgrade
from service.store.tables import Base

from .conftest import DATABASES, make_database


def _inspect(url: str) -> tuple[set[str], list[object]]:
    async def run() -> tuple[set[str], list[object]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                def sync(c: object) -> tuple[set[str], list[object]]:
                    tables = set(inspect(c).get_table_names())
                    ctx = MigrationContext.configure(c, opts={"compare_type": True})
                    return tables, compare_metadata(ctx, Base.metadata)

                return await conn.run_sync(sync)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("kind", DATABASES)
def test_upgrade_from_empty_matches_models_and_downgrade_to_empty(kind: str, tmp_path: Path) -> None:
    url, drop = make_database(kind, tmp_path)
    try:
        upgrade(url)
        tables, diffs = _inspect(url)
        assert set(Base.metadata.tables) <= tables
        assert diffs == [], f"models and migrations differ: {diffs}"
        downgrade(url)
        tables, _ = _inspect(url)
        assert tables <= {"alembic_version"}, f"left behind after downgrade: {tables}"
        upgrade(url)
        tables, diffs = _inspect(url)
        assert set(Base.metadata.tables) <= tables and diffs == []
    finally:
        drop()


def test_every_migration_file_is_one_step_of_one_chain() -> None:
    """Two files claiming the same revision make Alembic keep one of them silently (a merge
    that renumbers a file but not its header hides a migration): every file must be a step of
    a single linear chain from the base to one head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parents[1]
    script = ScriptDirectory.from_config(Config(str(root / "alembic.ini")))
    files = sorted(p.stem for p in (root / "migrations" / "versions").glob("[0-9]*.py"))
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert script.get_heads() == [chain[-1]]
    assert [f.split("_", 1)[0] for f in files] == chain, (files, chain)
