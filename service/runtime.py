"""What one server process holds: the engine, the conformance package and the search registry.

Nothing here is request state, and nothing here must survive: every request opens its own
connection and transaction through `Runtime.store`, so instances behind a load balancer share
only the database. The one cache that holds patient data (`access_cache`) is checked against
the database on every request, and losing it costs a re-read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .access.resolve import WATCHED, AccessCache
from .config import Settings
from .conformance.engine import Conformance, StoredQuestionnaireCheck, build_conformance
from .conformance.package import ConformancePackage, load_package
from .conformance.structure import r4_resource_types, validate_structure
from .conformance.topics import Topic, load_topics
from .fhir.outcome import FhirError
from .store.access import AccessPolicy
from .store.database import WRITE_OPTION, create_engine, is_statement_timeout
from .store.faults import transient
from .store.repository import ResourceStore, StoreConfig
from .store.search.parser import SearchParser
from .store.searchparams import SearchParamRegistry

if TYPE_CHECKING:
    from .operations.registry import OperationRegistry

WriteCheck = Callable[[dict[str, Any]], dict[str, Any]]
StoreCheck = Callable[[ResourceStore, dict[str, Any]], Awaitable[dict[str, Any]]]
CommitHook = Callable[["Runtime", ResourceStore], Awaitable[None]]


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
    operations: OperationRegistry
    write_checks: list[WriteCheck] = field(default_factory=lambda: [_structure_only])
    """Run in order on every resource before it is written (validation, security labels)."""
    store_checks: list[StoreCheck] = field(default_factory=list)
    """Write checks that must read the store (a response to a stored Questionnaire)."""
    conformance: Conformance | None = None
    """Profiles, terminology, questionnaires and labels compiled from `profiles/`."""
    topics: dict[str, Topic] = field(default_factory=dict)
    """The SubscriptionTopics of `profiles/subscriptions/`, by canonical URL."""
    commit_hooks: list[CommitHook] = field(default_factory=list)
    """Run in every transaction that wrote, after the store's last flush and before the
    commit: what they write commits with the change or not at all (the subscription outbox,
    `service.subscriptions.outbox`)."""
    access_cache: AccessCache = field(default_factory=AccessCache)
    """Parsed Consent versions and resolved callers of this database: a cache, checked against
    the database's change epoch on every request (`service.access.resolve`)."""

    @property
    def trigger_types(self) -> frozenset[str]:
        """The resource types some topic is triggered by."""
        return frozenset(t for topic in self.topics.values() for t in topic.resource_types)

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def check_write(self, resource: dict[str, Any]) -> dict[str, Any]:
        for check in self.write_checks:
            resource = check(resource)
        return resource

    async def check_write_in(self, store: ResourceStore, resource: dict[str, Any]) -> dict[str, Any]:
        """`check_write`, then the checks that need the request's store."""
        resource = self.check_write(resource)
        for check in self.store_checks:
            resource = await check(store, resource)
        return resource

    @asynccontextmanager
    async def store(self, access: AccessPolicy, write: bool = False) -> AsyncIterator[ResourceStore]:
        """One connection and one transaction: committed on success, rolled back on any error.

        The access policy opens inside the transaction (it reads the caller's consents there,
        so they hold for exactly what the request reads and writes) and completes the request
        inside it too (its audit record commits with the data, or neither does); a failed
        request is completed in a transaction of its own after the rollback, so refusals are on
        record too.
        """
        failure: FhirError | None = None
        async with self.engine.connect() as conn:
            options: dict[str, Any] = {WRITE_OPTION: True} if write or access.audited else {}
            # A request that only reads (and writes no more than its own AuditEvent) sees one
            # snapshot throughout: its count and its page, its consents and its data agree.
            # (SQLite: every transaction is one snapshot; PostgreSQL: repeatable read, which an
            # insert-only transaction cannot fail.) Writes stay read committed with row locks.
            snapshot = not write or conn.dialect.name == "sqlite"
            if not write and conn.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            if options:
                conn = await conn.execution_options(**options)
            try:
                async with conn.begin():
                    if not write and access.audited and conn.dialect.name == "postgresql":
                        await conn.exec_driver_sql(ASYNC_AUDIT_COMMIT)
                    await access.open(conn, snapshot)
                    store = ResourceStore(conn, self.store_config, access)
                    yield store
                    await store.finish()
                    if store.changes:
                        for hook in self.commit_hooks:
                            await hook(self, store)
                    await access.complete(store, 200)
            except FhirError as exc:
                failure = exc
                raise
            except Exception as exc:
                if is_statement_timeout(exc):
                    failure = too_costly(self.settings.statement_timeout_ms)
                    raise failure from exc
                # The database is away: recording the failure would fail (or wait) the same
                # way, and nothing was read or written (`service.store.faults`).
                failure = None if transient(exc) else FhirError(500, "exception",
                                                                type(exc).__name__)
                raise
            finally:
                # 401: the token was refused (revoked) as the transaction opened; no one was
                # authenticated, so nothing is audited, as for a token refused before.
                if failure is not None and access.audited and failure.status != 401:
                    async with conn.begin():
                        await access.complete(ResourceStore(conn, self.store_config, access),
                                              failure.status, failure.issues[0].diagnostics)

    async def close(self) -> None:
        await self.engine.dispose()


ASYNC_AUDIT_COMMIT = "SET LOCAL synchronous_commit = off"
"""For a transaction that writes nothing but its own AuditEvents (a read, a search): its
COMMIT returns once the commit record is in PostgreSQL's WAL buffers, without waiting for the
WAL flush (docs/benchmarks-read.md, "Durability"). The server process dying loses nothing
(the commit is done inside PostgreSQL before the response is sent); only a crash of the
database server itself can lose the audit records of the last moments (at most three times
`wal_writer_delay`, 600 ms by default), never a data write: every transaction that writes
data (`write=True`) commits synchronously as before."""


def too_costly(timeout_ms: int) -> FhirError:
    """The answer to a statement the database cancelled: 503, the server could not afford it
    now (it may be load, not only the query), and the client should narrow the search."""
    return FhirError(503, "too-costly", f"The database stopped the query after {timeout_ms} ms; "
                     "narrow the search (fewer or more selective parameters) or try again later")


def build_runtime(settings: Settings) -> Runtime:
    package = load_package(settings.profiles_dir)
    registry = SearchParamRegistry(package.of_type("SearchParameter"), package.patient_compartment)
    engine = create_engine(settings.resolved_database_url(), settings.db_pool_size,
                           settings.sql_echo, settings.db_connect_timeout_seconds,
                           settings.db_command_timeout_seconds, settings.statement_timeout_ms)
    from .operations.registry import default_registry
    from .subscriptions.outbox import record_events
    from .subscriptions.spec import outside_subscription_endpoint

    base = settings.base_url.rstrip("/")
    conformance = build_conformance(package, settings.profiles_dir)
    parser = SearchParser(registry, settings.default_page_size, settings.max_page_size,
                          settings.max_search_values, settings.max_search_criteria,
                          r4_resource_types())
    return Runtime(
        settings=settings,
        engine=engine,
        package=package,
        registry=registry,
        parser=parser,
        store_config=StoreConfig(registry, base, settings.max_include_results,
                                 watched=WATCHED),
        operations=default_registry(),
        write_checks=[outside_subscription_endpoint, _structure_only, conformance.check_profiles,
                      conformance.check_response, conformance.apply_labels],
        store_checks=[StoredQuestionnaireCheck(conformance, parser)],
        conformance=conformance,
        topics=load_topics(package),
        commit_hooks=[record_events],
    )
