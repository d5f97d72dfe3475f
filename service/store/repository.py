"""The SQL resource store: one instance per request, bound to one connection and one policy.

Method per FHIR interaction (R4 3.1.0): create, read, vread, update, delete, search, history.
The caller's access policy is part of every query and every write, so no operation built on
the store can read around consent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    not_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..fhir import dates
from ..fhir.digits import is_digits
from ..fhir.outcome import FhirError, bad_request, not_found
from . import epochs, inheritance, locks, one_statement
from .access import AccessPolicy, WriteIntent
from .indexer import Indexer, IndexRows, parse_reference, version_facts
from .records import HistoryPage, SearchPage, StoredResource
from .search import cursor as cursors
from .search.compiler import Compiler
from .search.includes import IncludeResolver
from .search.request import SearchRequest
from .searchparams import SearchParamRegistry
from .tables import (
    INDEX_TABLES,
    Compartment,
    Resource,
    ResourceLabel,
    ResourceVersion,
    VersionCode,
    VersionPeriod,
)

# Mapped classes type `__table__` as a FromClause; these are plain Tables (DML targets).
RES = cast(Table, Resource.__table__)
VER = cast(Table, ResourceVersion.__table__)
COMP = cast(Table, Compartment.__table__)
LABEL = cast(Table, ResourceLabel.__table__)
VCODE = cast(Table, VersionCode.__table__)
VPERIOD = cast(Table, VersionPeriod.__table__)
INDEXES = cast(dict[str, Table], INDEX_TABLES)
_PENDING_TABLES: dict[str, Table] = {**INDEXES, "resource": RES, "version": VER,
                                     "compartment": COMP, "label": LABEL,
                                     "version_code": VCODE, "version_period": VPERIOD}
R = RES.alias("r")
V = VER.alias("v")
"""The aliases every guarded query selects from. Fixed, so the access predicate built for them
is built once per process (`service.access.predicates`), not once per query."""
_READ_TYPE, _READ_ID = "read_type", "read_id"


@lru_cache(maxsize=512)
def _read_statement(predicate: ColumnElement[bool] | None) -> Any:
    """The current version by type and id under an access predicate (the predicates are built
    once per access plan, so this is once per plan too): SQLAlchemy derives a statement's cache
    key once per statement object, and for a predicate with several sub-selects deriving it
    anew for every read costs about 0.1 ms."""
    stmt = select(R).where(R.c.resource_type == bindparam(_READ_TYPE, type_=String),
                           R.c.id == bindparam(_READ_ID, type_=String))
    return stmt if predicate is None else stmt.where(predicate)


ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class StoreConfig:
    """What every per-request store shares: the search registry and the public base URL."""

    registry: SearchParamRegistry
    base_url: str
    max_include: int = 1000
    watched: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Resource types whose writes bump the change epochs (`tables.ChangeEpoch`) of the resource
    itself and of what its reference parameters listed here name, before and after."""

    @property
    def indexer(self) -> Indexer:
        return Indexer(self.registry, self.base_url)


class ResourceStore:
    def __init__(self, conn: AsyncConnection, config: StoreConfig, access: AccessPolicy) -> None:
        self.conn = conn
        self.config = config
        self.access = access
        self._indexer = Indexer(config.registry, config.base_url)
        self._bumps: set[str] = set()
        """References whose change epoch this transaction bumps when it finishes."""
        self._joined: set[int] = set()
        """Resources that joined a patient's record in this transaction and may be referenced
        by an inheriting resource (a Provenance) written before them (`inheritance.propagate`,
        at flush)."""
        self._wrote_inheritor = False
        self.changes: list[StoredResource] = []
        """What this transaction wrote, in order (for `Runtime.commit_hooks`)."""
        self._pending: dict[str, list[dict[str, Any]]] = {}
        """Rows of resources, versions, indexes, compartments and labels not yet sent: a
        transaction Bundle writes each table once instead of once per resource. Every query
        flushes first, so nothing is ever read around them."""
        self.keep_unchanged = False
        """An update whose content equals the stored version's (but for `meta.versionId` and
        `meta.lastUpdated`) writes no new version (the bulk importer: a second run of the
        same file changes nothing). Off by default: a PUT over HTTP always makes a version."""
        self.unchanged: set[str] = set()
        """`Type/id` of the updates `keep_unchanged` left as they were."""
        self._free_pks: list[int] = []
        self._located: dict[tuple[str, str], Any] = {}
        """Rows `locate_all` found (or None: absent) for updates still to run."""
        """Primary keys handed out by the database for resources this transaction creates
        (`reserve`), so a create needs no `INSERT ... RETURNING` round trip of its own."""

    async def reserve(self, count: int) -> None:
        """Have at least `count` primary keys for new resources ready, in one round trip.

        PostgreSQL: `nextval` of the `resource.pk` sequence, so concurrent instances never
        share a key (a rolled-back transaction leaves a gap, as a failed INSERT does). SQLite:
        one writer at a time holds the database (BEGIN IMMEDIATE), so the keys after the
        highest one stored, or handed out here, are ours until we commit."""
        wanted = count - len(self._free_pks)
        if wanted <= 0:
            return
        if self.conn.dialect.name == "postgresql":
            rows = await self.conn.execute(text(
                "SELECT nextval(pg_get_serial_sequence('resource', 'pk')) "
                "FROM generate_series(1, :n)"), {"n": wanted})
            self._free_pks.extend(int(r[0]) for r in rows)
            return
        await self.flush()
        highest = max((await self.conn.execute(select(func.max(RES.c.pk)))).scalar() or 0,
                      *self._free_pks, 0)
        self._free_pks.extend(range(highest + 1, highest + 1 + wanted))

    async def flush(self) -> None:
        """Send the pending rows (one multi-row INSERT per table; resources first, as every
        other row refers to one)."""
        while self._pending:
            pending, self._pending = self._pending, {}
            resources = pending.pop("resource", None)
            if resources:
                await self.conn.execute(insert(RES), resources)
            for name, rows in pending.items():
                await self.conn.execute(insert(_PENDING_TABLES[name]), rows)
        if self._joined:
            joined, self._joined = self._joined, set()
            keys = sorted({k for ks in self.config.registry.compartment_inherit.values()
                           for k in ks})
            await inheritance.propagate(self.conn, keys, joined)

    async def finish(self) -> None:
        """The last step before commit: flush, and bump the change epochs of what the watched
        writes named (last: their row locks are held only until the commit)."""
        await self.flush()
        bumps, self._bumps = self._bumps, set()
        await epochs.bump(self.conn, bumps)

    def _changed(self, rtype: str, rid: str, rows: IndexRows | None, before: set[str]) -> None:
        keys = self.config.watched.get(rtype)
        if keys is not None:
            self._bumps |= before | epochs.named(
                rtype, rid, rows.rows.get("reference", []) if rows else [], keys)

    async def _named(self, rtype: str, pk: int) -> set[str]:
        """What a watched resource's stored version names, before it is replaced."""
        keys = self.config.watched.get(rtype)
        if not keys:
            return set()
        await self.flush()
        return await epochs.named_now(self.conn, pk, keys)

    # -- reads --------------------------------------------------------------------------
    async def read(self, resource_type: str, rid: str) -> StoredResource:
        """Current version; 404 when unknown or not visible, 410 when deleted."""
        await self.flush()
        self.access.check_type(resource_type, "read")
        row = await self._current(resource_type, rid)
        if row is None:
            raise not_found(f"{resource_type}/{rid} is not known")
        if row.deleted:
            raise FhirError(410, "deleted", f"{resource_type}/{rid} was deleted",
                            headers={"ETag": f'W/"{row.version_id}"'})
        self.access.seen([row])
        return row

    async def vread(self, resource_type: str, rid: str, version: str) -> StoredResource:
        await self.flush()
        self.access.check_type(resource_type, "read")
        if not is_digits(version) or len(version) > 9:
            # Versions are 32-bit integers in the schema; a longer number cannot exist.
            raise not_found(f"Version '{version}' of {resource_type}/{rid} is not known")
        stmt = select(V).where(V.c.resource_type == resource_type, V.c.id == rid,
                               V.c.version_id == int(version))
        stmt = self._guard(stmt, V.c.resource_pk, V.c.resource_type)
        row = (await self._query(stmt)).mappings().first()
        if row is None:
            raise not_found(f"Version {version} of {resource_type}/{rid} is not known")
        stored = _version(row)
        if stored.content is None:
            raise FhirError(410, "deleted", f"Version {version} of {resource_type}/{rid} is a deletion")
        self.access.seen([stored])
        return stored

    async def _current(self, resource_type: str, rid: str) -> StoredResource | None:
        await self.flush()
        stmt = _read_statement(self.access.visible(R.c.pk, R.c.resource_type))
        row = (await self.conn.execute(stmt, {**self.access.parameters, _READ_TYPE: resource_type,
                                              _READ_ID: rid})).mappings().first()
        return _current(row) if row else None

    def _guard(self, stmt: Any, pk: Any, rtype: Any) -> Any:
        predicate = self.access.visible(pk, rtype)
        return stmt if predicate is None else stmt.where(predicate)

    async def _query(self, stmt: Any) -> Any:
        """Run a query that carries the access predicate, with the values it is bound to."""
        return await self.conn.execute(stmt, dict(self.access.parameters))

    # -- writes -------------------------------------------------------------------------
    async def create(self, resource: dict[str, Any], rid: str | None = None,
                     client_id: bool = False) -> StoredResource:
        """Store a new resource with a server-assigned id, or `rid`: an id handed out earlier
        in this transaction, or with `client_id` one the client chose (update as create)."""
        rtype = resource["resourceType"]
        chosen = rid is not None
        rid = rid or str(uuid.uuid4())
        now = dates.utcnow()
        content, rows = await self._prepared(resource, rid, 1, now, set())
        self.access.check_write(WriteIntent("create", rtype, resource, frozenset(rows.patients),
                                            frozenset(rows.labels), client_id=client_id))
        row = {"resource_type": rtype, "id": rid, "version_id": 1, "last_updated": now,
               "deleted": False, "content": content}
        if client_id:
            # An id the client chose may be taken: insert now, so the unique key answers here,
            # not at a later flush. ON CONFLICT DO NOTHING answers without failing the
            # transaction (no savepoint round trips); a concurrent creator of the same id is
            # waited for, and then it is taken.
            # Its key is a reserved one too: on SQLite the database's own choice (the highest
            # key + 1) could be one already reserved for a create still pending.
            if not self._free_pks:
                await self.reserve(1)
            pk = self._free_pks.pop(0)
            dialect_insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
            stmt = dialect_insert(RES).values(pk=pk, **row).on_conflict_do_nothing(
                index_elements=["resource_type", "id"]).returning(RES.c.pk)
            if (await self.conn.execute(stmt)).scalar() is None:
                self._free_pks.insert(0, pk)  # never used: still ours
                raise FhirError(409, "duplicate", f"{rtype}/{rid} already exists")
        else:
            # A server-assigned id (a fresh UUID) is free: the row waits for the flush with
            # the version and index rows, under a key reserved in advance.
            if not self._free_pks:
                await self.reserve(1)
            pk = self._free_pks.pop(0)
            self._pending.setdefault("resource", []).append({"pk": pk, **row})
        await self._write_version(pk, rtype, rid, 1, now, "POST", content)
        await self._write_indexes(pk, rows, set(), set())
        self._write_facts(pk, 1, rows)
        self._changed(rtype, rid, rows, set())
        if rows.patients and (chosen or self._wrote_inheritor):
            # Only a client-chosen id, or an id handed out earlier in this transaction, can
            # already be the target of an inheriting resource.
            self._joined.add(pk)
        stored = StoredResource(pk, rtype, rid, 1, now, content)
        self.changes.append(stored)
        self.access.seen([stored], wrote=True)
        return stored

    async def create_at_once(self, resource: dict[str, Any]) -> StoredResource:
        """`create` with a server-assigned id, its rows sent in one statement on PostgreSQL
        (`one_statement`): for what the server itself writes on every request (the
        AuditEvent of a read), where the round trips are the cost. The same rows, checks and
        access bookkeeping as `create`; a type that inherits a compartment or is watched for
        consent changes, and SQLite (no round trips to save), go through `create`."""
        rtype = resource["resourceType"]
        if (self.conn.dialect.name != "postgresql" or rtype in self.config.watched
                or self.config.registry.compartment_inherit.get(rtype)):
            return await self.create(resource)
        await self.flush()
        rid, now = str(uuid.uuid4()), dates.utcnow()
        content, rows = self._prepare(resource, rid, 1, now, set())
        self.access.check_write(WriteIntent("create", rtype, resource, frozenset(rows.patients),
                                            frozenset(rows.labels)))
        placeholder = one_statement.PLACEHOLDER_PK
        await self._write_version(placeholder, rtype, rid, 1, now, "POST", content)
        await self._write_indexes(placeholder, rows, set(), set())
        self._write_facts(placeholder, 1, rows)
        pending, self._pending = self._pending, {}
        pk = await one_statement.insert_resource(
            self.conn, RES, {"resource_type": rtype, "id": rid, "version_id": 1,
                             "last_updated": now, "deleted": False, "content": content},
            [(_PENDING_TABLES[name], items) for name, items in pending.items()])
        if rows.patients and self._wrote_inheritor:
            self._joined.add(pk)
        stored = StoredResource(pk, rtype, rid, 1, now, content)
        self.access.seen([stored], wrote=True)
        return stored

    async def update(
        self, resource: dict[str, Any], rid: str, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        """Replace the current version; returns (stored, created). 412 on If-Match mismatch.

        An id the caller may not see is answered exactly as a free id (If-Match fails, or
        update as create with its checks): a different answer would tell that it exists. Only
        a caller who may choose ids and passes every check of the create learns that the id is
        taken (409), never whose it is.
        """
        rtype = resource["resourceType"]
        existing = await self._locate(rtype, rid, hidden_as_absent=True)
        if existing is None:
            if if_match is not None:
                raise FhirError(412, "conflict", f"{rtype}/{rid} does not exist, If-Match fails")
            created = await self._create_if_absent(resource, rid)
            if created is not None:
                return created, True
            existing = await self._locate(rtype, rid, hidden_as_absent=True)
            if existing is None:
                raise FhirError(409, "conflict", f"{rtype}/{rid} cannot be created: the id is taken")
        pk, old_version, _deleted = existing
        if if_match is not None and if_match != old_version:
            raise FhirError(412, "conflict",
                            f"{rtype}/{rid} is at version {old_version}, not {if_match}")
        old_labels = await self._labels(pk)
        old_patients = await self._patients(pk)
        now = dates.utcnow()
        version = old_version + 1
        content, rows = await self._prepared(resource, rid, version, now, old_labels)
        if old_patients and not old_patients <= rows.patients:
            raise FhirError(422, "business-rule",
                            f"{rtype}/{rid} belongs to another patient's record and cannot be moved",
                            expression=[f"{rtype}.subject"])
        previous = await self._content(pk)
        self.access.check_write(WriteIntent("update", rtype, resource, frozenset(rows.patients),
                                            frozenset(rows.labels | old_labels),
                                            previous=previous,
                                            previous_patients=frozenset(old_patients)))
        if self.keep_unchanged and previous is not None and _same_content(previous, content):
            kept = await self._current(rtype, rid)
            if kept is not None:
                self.unchanged.add(f"{rtype}/{rid}")
                self.access.seen([kept])
                return kept, False
        result = await self.conn.execute(
            update(RES)
            .where(RES.c.pk == pk, RES.c.version_id == old_version)
            .values(version_id=version, last_updated=now, deleted=False, content=content)
        )
        if result.rowcount != 1:
            if if_match is not None:
                raise FhirError(412, "conflict", f"{rtype}/{rid} is no longer at version {if_match}")
            raise FhirError(409, "conflict", f"{rtype}/{rid} was changed concurrently; retry")
        await self._write_version(pk, rtype, rid, version, now, "PUT", content)
        named_before = await self._named(rtype, pk)
        await self._clear_indexes(pk)
        await self._write_indexes(pk, rows, old_labels, old_patients)
        self._write_facts(pk, version, rows)
        if rows.patients - old_patients:
            self._joined.add(pk)
        self._changed(rtype, rid, rows, named_before)
        stored = StoredResource(pk, rtype, rid, version, now, content)
        self.changes.append(stored)
        self.access.seen([stored], wrote=True)
        return stored, False

    async def _create_if_absent(self, resource: dict[str, Any], rid: str) -> StoredResource | None:
        """Update-as-create; None when a concurrent writer created the same id first.

        The insert is `ON CONFLICT DO NOTHING`, so losing that race leaves our transaction
        usable (nothing of the create was written) and the caller can apply its write as an
        ordinary update."""
        try:
            return await self.create(resource, rid, client_id=True)
        except FhirError as exc:
            if exc.status == 409 and exc.issues[0].code == "duplicate":
                return None
            raise

    async def delete(self, resource_type: str, rid: str,
                     if_match: int | None = None) -> StoredResource | None:
        """Logical delete: a new, empty version; reads then give 410. None if already gone.

        With `if_match`, 412 unless that is the current version: a client must not delete
        a change it has not seen.
        """
        existing = await self._locate(resource_type, rid)
        if existing is None:
            raise not_found(f"{resource_type}/{rid} is not known")
        pk, old_version, deleted = existing
        if if_match is not None and if_match != old_version:
            raise FhirError(412, "conflict",
                            f"{resource_type}/{rid} is at version {old_version}, not {if_match}")
        if deleted:
            return None
        labels = await self._labels(pk)
        patients = await self._patients(pk)
        self.access.check_write(WriteIntent("delete", resource_type, None, frozenset(patients),
                                            frozenset(labels), previous=await self._content(pk),
                                            previous_patients=frozenset(patients)))
        now = dates.utcnow()
        version = old_version + 1
        result = await self.conn.execute(
            update(RES)
            .where(RES.c.pk == pk, RES.c.version_id == old_version)
            .values(version_id=version, last_updated=now, deleted=True, content=None)
        )
        if result.rowcount != 1:
            raise FhirError(409, "conflict", f"{resource_type}/{rid} was changed concurrently")
        await self._write_version(pk, resource_type, rid, version, now, "DELETE", None)
        named_before = await self._named(resource_type, pk)
        await self._clear_indexes(pk)
        await self._carry_facts(pk, old_version, version)
        self._changed(resource_type, rid, None, named_before)
        gone = StoredResource(pk, resource_type, rid, version, now, None, deleted=True)
        self.changes.append(gone)
        self.access.seen([gone], wrote=True)
        return gone

    async def locate_all(self, refs: Iterable[tuple[str, str]]) -> None:
        """Look up (and lock) the resources a transaction's updates name, in one statement
        for all of them instead of one per update; each `_locate` of them then uses its
        answer once. An id absent here that a concurrent writer creates meanwhile is caught
        by the create's unique key (`create`), and the update then locates it anew."""
        wanted = sorted(set(refs))
        if not wanted:
            return
        await self.flush()
        visible = self.access.visible(R.c.pk, R.c.resource_type)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            stmt = select(R.c.resource_type, R.c.id, R.c.pk, R.c.version_id, R.c.deleted,
                          (true() if visible is None else visible).label("visible")).where(
                tuple_(R.c.resource_type, R.c.id).in_(chunk)).with_for_update(of=R)
            found = {(row.resource_type, row.id): row for row in await self._query(stmt)}
            for ref in chunk:
                self._located[ref] = found.get(ref)

    async def _locate(self, rtype: str, rid: str,
                      hidden_as_absent: bool = False) -> tuple[int, int, bool] | None:
        """pk, version and deleted flag of a resource the caller may see; None when there is
        none, and for one the caller may not see 404 (or None with `hidden_as_absent`).

        The row is locked (PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE) so the
        version we compare with If-Match is still current when we write: a concurrent writer
        waits for our commit and then sees our version, instead of failing halfway.
        """
        if (rtype, rid) in self._located:
            # `locate_all` answered for the batch: no query, so the pending rows may wait.
            row = self._located.pop((rtype, rid))
        else:
            await self.flush()
            # Existence and visibility in one statement: two statements would let a concurrent
            # create slip in between and make a new resource look like a hidden one.
            visible = self.access.visible(R.c.pk, R.c.resource_type)
            stmt = select(R.c.pk, R.c.version_id, R.c.deleted,
                          (true() if visible is None else visible).label("visible")).where(
                R.c.resource_type == rtype, R.c.id == rid).with_for_update(of=R)
            row = (await self._query(stmt)).first()
        if row is None:
            return None
        if not row.visible:
            # It exists, but not for this caller: writing over it would be a leak and a loss.
            if hidden_as_absent:
                return None
            raise not_found(f"{rtype}/{rid} is not known")
        return int(row.pk), int(row.version_id), bool(row.deleted)

    def _prepare(self, resource: dict[str, Any], rid: str, version: int, now: datetime,
                 old_labels: set[tuple[str, str]]) -> tuple[str, IndexRows]:
        if not ID_RE.match(rid):
            raise FhirError(400, "invalid", f"'{rid}' is not a valid FHIR id", "id")
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = dates.to_instant(now)
        security = list(meta.get("security") or [])
        present = {(s.get("system") or "", s.get("code")) for s in security}
        for system, code in sorted(old_labels - present):
            security.append({"system": system, "code": code} if system else {"code": code})
        if security:
            meta["security"] = security
        body = {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}
        doc = {"resourceType": resource["resourceType"], "id": rid, "meta": meta, **body}
        rows = self._indexer.index(doc)
        return orjson.dumps(doc).decode(), rows

    async def _write_version(self, pk: int, rtype: str, rid: str, version: int, now: datetime,
                             method: str, content: str | None) -> None:
        self._pending.setdefault("version", []).append({
            "resource_pk": pk, "resource_type": rtype, "id": rid, "version_id": version,
            "last_updated": now, "method": method, "content": content})

    async def _clear_indexes(self, pk: int) -> None:
        for kind in INDEXES:
            if kind in self._pending:
                self._pending[kind] = [r for r in self._pending[kind] if r["resource_pk"] != pk]
        for table in INDEXES.values():
            await self.conn.execute(delete(table).where(table.c.resource_pk == pk))

    def _write_facts(self, pk: int, version: int, rows: IndexRows) -> None:
        """What consent judges about this version's content, kept with the version for good
        (`indexer.version_facts`): vread and history judge each version by its own."""
        codes, periods = version_facts(rows)
        key = {"resource_pk": pk, "version_id": version}
        if codes:
            self._pending.setdefault("version_code", []).extend({**key, **c} for c in codes)
        if periods:
            self._pending.setdefault("version_period", []).extend({**key, **p} for p in periods)

    async def _carry_facts(self, pk: int, deleted: int, version: int) -> None:
        """A deletion is judged by what it deleted: it gets the facts of the version before
        it, so the deletion entry in history is visible to exactly those who could see that
        version (and the current row of a deleted resource keeps being judged by it)."""
        await self.flush()
        for table, columns in ((VCODE, ("system", "code")), (VPERIOD, ("low", "high"))):
            await self.conn.execute(insert(table).from_select(
                ["resource_pk", "version_id", *columns],
                select(table.c.resource_pk, literal(version, Integer),
                       *[table.c[c] for c in columns]).where(
                    table.c.resource_pk == pk, table.c.version_id == deleted)))

    async def _write_indexes(self, pk: int, rows: IndexRows, old_labels: set[tuple[str, str]],
                             old_patients: set[str]) -> None:
        for kind, items in rows.rows.items():
            self._pending.setdefault(kind, []).extend({"resource_pk": pk, **item} for item in items)
        for p in sorted(rows.patients - old_patients):
            self._pending.setdefault("compartment", []).append({"resource_pk": pk, "patient_id": p})
        for s, c in sorted(rows.labels - old_labels):
            self._pending.setdefault("label", []).append({"resource_pk": pk, "system": s, "code": c})

    # -- compartments inherited through references (CompartmentDefinition extension) -----
    async def _prepared(self, resource: dict[str, Any], rid: str, version: int, now: datetime,
                        old_labels: set[tuple[str, str]]) -> tuple[str, IndexRows]:
        """`_prepare`, and for an inheriting type (Provenance) what it inherits from the
        resources it is about: their records, and their security labels (it tells about them,
        so it is as protected as they are)."""
        content, rows = self._prepare(resource, rid, version, now, old_labels)
        keys = self.config.registry.compartment_inherit.get(resource["resourceType"])
        if not keys:
            return content, rows
        self._wrote_inheritor = True
        await self.flush()
        await self._require_visible_targets(resource, keys, rows)
        patients, labels = await inheritance.inherited(self.conn, (
            (r["target_type"], r["target_id"]) for r in rows.rows.get("reference", [])
            if r["param"] in keys and r["target_type"] and r["target_id"]))
        if not labels <= rows.labels:
            content, rows = self._prepare(resource, rid, version, now, old_labels | labels)
        rows.patients.update(patients)
        return content, rows

    async def _require_visible_targets(self, resource: dict[str, Any], keys: tuple[str, ...],
                                       rows: IndexRows) -> None:
        """What an inheriting resource (a Provenance) is about must be there for the caller to
        see: it takes its record and labels from its targets, so a target the caller may not
        see would otherwise be answered by that record's consent (and name its patient), and a
        free id differently again. One answer for both, naming the reference as written. The
        operator sees everything, so nothing is hidden from them: their Provenances may still
        come before their targets (`inheritance.propagate`)."""
        predicate = self.access.visible(R.c.pk, R.c.resource_type)
        if predicate is None:
            return
        wanted = {(r["target_type"], r["target_id"]) for r in rows.rows.get("reference", [])
                  if r["param"] in keys and r["target_type"] and r["target_id"]}
        found: set[tuple[str, str]] = set()
        if wanted:
            stmt = select(R.c.resource_type, R.c.id).where(
                tuple_(R.c.resource_type, R.c.id).in_(sorted(wanted))).where(predicate)
            found = {(r.resource_type, r.id) for r in await self._query(stmt)}
        rtype = resource["resourceType"]
        for key in keys:
            element = key.split(".", 1)[1]
            values = resource.get(element)
            for i, value in enumerate(values if isinstance(values, list) else [values]):
                reference = value.get("reference") if isinstance(value, dict) else None
                if not isinstance(reference, str) or not reference:
                    continue
                ttype, tid, _url = parse_reference(reference, self.config.base_url)
                if ttype is None or tid is None or (ttype, tid) in found:
                    continue  # another server's, contained, or there to see
                raise FhirError(422, "not-found",
                                f"{rtype}.{element}[{i}]: {reference} is not known; a {rtype} "
                                "must be about resources you can see",
                                expression=[f"{rtype}.{element}[{i}]"])

    async def _labels(self, pk: int) -> set[tuple[str, str]]:
        await self.flush()
        rows = await self.conn.execute(select(LABEL.c.system, LABEL.c.code).where(
            LABEL.c.resource_pk == pk))
        return {(r.system, r.code) for r in rows}

    async def _content(self, pk: int) -> dict[str, Any] | None:
        """The current content of a resource about to be replaced (None when deleted), for the
        access policy to judge what a write changes, not only what it leaves."""
        await self.flush()
        content = (await self.conn.execute(select(R.c.content).where(R.c.pk == pk))).scalar()
        loaded: dict[str, Any] | None = orjson.loads(content) if content else None
        return loaded

    async def _patients(self, pk: int) -> set[str]:
        await self.flush()
        rows = await self.conn.execute(select(COMP.c.patient_id).where(COMP.c.resource_pk == pk))
        return {r.patient_id for r in rows}

    async def _owners_of(self, matches: Any) -> set[str]:
        """The patients whose records hold the rows a (guarded) selection of pks yields."""
        rows = await self._query(select(COMP.c.patient_id).where(
            COMP.c.resource_pk.in_(matches)).distinct())
        return {row.patient_id for row in rows}

    # -- search -------------------------------------------------------------------------
    async def search(self, req: SearchRequest) -> SearchPage:
        await self.flush()
        self.access.check_type(req.resource_type, "search")
        r = R
        compiler = Compiler(self.access.visible, self.config.base_url)
        where = compiler.where(r, req.resource_type, req.criteria)
        if req.types:
            where.append(r.c.resource_type.in_(req.types))
        if req.compartment is not None:
            where.append(r.c.pk.in_(select(COMP.c.resource_pk).where(
                COMP.c.patient_id == req.compartment)))
        if req.records is not None:
            where.append(r.c.pk.in_(select(COMP.c.resource_pk).where(
                COMP.c.patient_id.in_(req.records))))
        if req.any_record:
            where.append(r.c.pk.in_(select(COMP.c.resource_pk)))
        total = None
        if req.total != "none" or req.summary == "count":
            total = (await self._query(
                select(func.count()).select_from(r).where(*where))).scalar_one()
        if req.summary == "count" or req.count == 0:
            if total and self.access.audited:
                # The caller learned something about these records without being handed a
                # resource: the audit names them all the same.
                self.access.counted(await self._owners_of(select(r.c.pk).where(*where)))
            return SearchPage([], [], total)
        keys = [(compiler.sort_expr(r, k), k.descending) for k in req.sort] + [(r.c.pk, False)]
        order_sig = cursors.signature(req.sort)
        cur = cursors.decode(req.cursor, order_sig) if req.cursor else None
        backwards = bool(cur and cur.backwards)
        if cur:
            where.append(cursors.after(keys, cur.values, backwards))
        sort_cols = [e.label(f"s{i}") for i, (e, _) in enumerate(keys[:-1])]
        order = [(e.desc() if d != backwards else e.asc()) for e, d in keys]
        stmt = (
            select(r.c.pk, r.c.resource_type, r.c.id, r.c.version_id, r.c.last_updated,
                   r.c.content, *sort_cols)
            .where(*where).order_by(*order).limit(req.count + 1)
        )
        rows = list((await self._query(stmt)).mappings())
        more = len(rows) > req.count
        rows = rows[: req.count]
        if backwards:
            rows.reverse()
        matches = [StoredResource(row["pk"], row["resource_type"], row["id"], row["version_id"],
                                  row["last_updated"], row["content"]) for row in rows]

        def key_values(row: Any) -> list[Any]:
            return [row[f"s{i}"] for i in range(len(keys) - 1)] + [row["pk"]]

        next_cursor = prev_cursor = None
        if rows and (more if not backwards else True):
            next_cursor = cursors.encode(key_values(rows[-1]), False, order_sig)
        if rows and (cur is not None if not backwards else more):
            prev_cursor = cursors.encode(key_values(rows[0]), True, order_sig)
        included = await IncludeResolver(self._query, self.config, self.access).resolve(
            matches, req.include, req.revinclude)
        self.access.seen(matches + included)
        return SearchPage(matches, included, total, next_cursor, prev_cursor)

    async def lock_conditions(self, conditions: Iterable[tuple[str, locks.Criteria]]) -> None:
        """Serialise conditional writes on the same (type, criteria) until this transaction
        ends; call before `count_matches` (`service.store.locks`)."""
        await locks.lock_conditions(self.conn, (locks.condition_key(rtype, criteria)
                                                for rtype, criteria in conditions))

    async def count_matches(self, req: SearchRequest, limit: int = 2) -> list[StoredResource]:
        """Up to `limit` matches of a conditional interaction's criteria (If-None-Exist etc.)."""
        await self.flush()
        where = Compiler(self.access.visible, self.config.base_url).where(
            R, req.resource_type, req.criteria)
        stmt = select(R).where(*where).order_by(R.c.pk).limit(limit)
        found = [_current(row) for row in (await self._query(stmt)).mappings()]
        # What the interaction acts on, hands back (a conditional create's match) or counts
        # (412): on the audit like anything a search returns.
        self.access.seen(found)
        return found

    # -- history ------------------------------------------------------------------------
    async def history(self, resource_type: str | None, rid: str | None, since: datetime | None,
                      at: datetime | None, count: int, cursor: str | None) -> HistoryPage:
        await self.flush()
        self.access.check_type(resource_type, "history")
        if rid is not None and resource_type is not None:
            await self._require_exists(resource_type, rid)
        v = V
        conds: list[Any] = []
        if resource_type:
            conds.append(v.c.resource_type == resource_type)
        if rid:
            conds.append(v.c.id == rid)
        if since:
            conds.append(v.c.last_updated >= since)
        if at:
            later = VER.alias("later")
            conds.append(v.c.last_updated <= at)
            conds.append(not_(select(later.c.pk).where(
                later.c.resource_pk == v.c.resource_pk, later.c.last_updated <= at,
                later.c.version_id > v.c.version_id).exists()))
        predicate = self.access.visible(v.c.resource_pk, v.c.resource_type)
        if predicate is not None:
            conds.append(predicate)
        total = (await self._query(
            select(func.count()).select_from(v).where(*conds))).scalar_one()
        if cursor:
            position = cursors.decode(cursor).values
            if len(position) != 1:
                raise bad_request("The paging cursor does not belong to this history",
                                          "_cursor")
            conds.append(v.c.pk < position[0])
        stmt = select(v).where(*conds).order_by(v.c.pk.desc()).limit(count + 1)
        rows = list((await self._query(stmt)).mappings())
        more = len(rows) > count
        rows = rows[:count]
        next_cursor = cursors.encode([rows[-1]["pk"]], False) if more and rows else None
        entries = [_version(row) for row in rows]
        self.access.seen(entries)
        return HistoryPage(entries, total, next_cursor)

    async def _require_exists(self, resource_type: str, rid: str) -> None:
        await self.flush()
        stmt = select(R.c.pk).where(R.c.resource_type == resource_type, R.c.id == rid)
        if (await self._query(self._guard(stmt, R.c.pk, R.c.resource_type))).first() is None:
            raise not_found(f"{resource_type}/{rid} is not known")

    async def exists(self, resource_type: str, rid: str) -> bool:
        await self.flush()
        stmt = select(R.c.pk).where(R.c.resource_type == resource_type, R.c.id == rid,
                                    R.c.deleted == false())
        return (await self._query(self._guard(stmt, R.c.pk, R.c.resource_type))).first() \
            is not None

    async def still_visible(self, resource_type: str,
                            refs: list[tuple[int, str]]) -> set[int]:
        """Which of these stored resources (pk, id) the caller may read now (a file written
        earlier is served only as far as the caller's access still reaches); they count as
        read for the audit."""
        await self.flush()
        found: list[StoredResource] = []
        for i in range(0, len(refs), 500):
            pks = [pk for pk, _ in refs[i:i + 500]]
            stmt = select(R.c.pk, R.c.resource_type, R.c.id, R.c.version_id, R.c.last_updated) \
                .where(R.c.pk.in_(pks), R.c.resource_type == resource_type)
            rows = await self._query(self._guard(stmt, R.c.pk, R.c.resource_type))
            found += [StoredResource(r.pk, r.resource_type, r.id, r.version_id, r.last_updated,
                                     None) for r in rows]
        self.access.seen(found)
        return {r.pk for r in found}

    async def resources_in_compartment(self, patient_id: str,
                                       limit: int) -> list[StoredResource]:
        """Current resources in a patient's compartment the caller may see ($everything)."""
        await self.flush()
        stmt = select(R).where(
            R.c.deleted == false(),
            R.c.pk.in_(select(COMP.c.resource_pk).where(COMP.c.patient_id == patient_id)),
        ).order_by(R.c.resource_type, R.c.pk).limit(limit)
        stmt = self._guard(stmt, R.c.pk, R.c.resource_type)
        found = [_current(row) for row in (await self._query(stmt)).mappings()]
        self.access.seen(found)
        return found


def _same_content(previous: dict[str, Any], content: str) -> bool:
    """Whether `content` (about to be stored) says what `previous` (stored) says, but for the
    version and time the store itself puts in `meta`."""
    def bare(doc: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (doc.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")}
        return {**{k: v for k, v in doc.items() if k != "meta"}, **({"meta": meta} if meta else {})}

    return bare(previous) == bare(orjson.loads(content))


def _current(row: Any) -> StoredResource:
    return StoredResource(row["pk"], row["resource_type"], row["id"], row["version_id"],
                          row["last_updated"], row["content"], bool(row["deleted"]))


def _version(row: Any) -> StoredResource:
    return StoredResource(row["resource_pk"], row["resource_type"], row["id"], row["version_id"],
                          row["last_updated"], row["content"], row["content"] is None,
                          row["method"])


__all__ = ["ResourceStore", "StoreConfig"]
