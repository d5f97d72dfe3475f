"""What one server process holds: the engine, the conformance package and the search registry.

Nothing here is patient data or request state; every request opens its own connection and
transaction through `Runtime.store`, so instances behind a load balancer share only the
database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings
from .conformance.package import ConformancePackage, load_package
from .conformance.structure import validate_structure
from .store.access import AccessPolicy
from .store.database import WRITE_OPTION, create_engine
from .store.repository import ResourceStore, StoreConfig
from .store.search.parser import SearchParser
from .store.searchparams import SearchParamRegistry

WriteCheck = Callable[[dict[str, Any]], dict[str, Any]]


def _structure_only(resource: dict[str, Any]) -> dict[str, Any]:
    validate_structure(resource)
    return resource


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    package: ConformancePackage
    registry: SearchParamRegistry
    parser: SearchParser
    store_config: StoreConfig
    write_checks: list[WriteCheck] = field(default_factory=lambda: [_structure_only])
    """Run in order on every resource before it is written (validation, security labels)."""

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def check_write(self, resource: dict[str, Any]) -> dict[str, Any]:
        for check in self.write_checks:
            resource = check(resource)
        return resource

    @asynccontextmanager
    async def store(self, access: AccessPolicy, write: bool = False) -> AsyncIterator[ResourceStore]:
        """One connection and one transaction: committed on success, rolled back on any error."""
        async with self.engine.connect() as conn:
            if write:
                conn = await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield ResourceStore(conn, self.store_config, access)

    async def close(self) -> None:
        await self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    package = load_package(settings.profiles_dir)
    registry = SearchParamRegistry(package.of_type("SearchParameter"), package.patient_compartment)
    engine = create_engine(settings.resolved_database_url(), settings.db_pool_size,
                           settings.sql_echo)
    base = settings.base_url.rstrip("/")
    return Runtime(
        settings=settings,
        engine=engine,
        package=package,
        registry=registry,
        parser=SearchParser(registry, settings.default_page_size, settings.max_page_size),
        store_config=StoreConfig(registry, base, settings.max_include_results),
    )
