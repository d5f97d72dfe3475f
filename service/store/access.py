"""The access contract the store enforces on every query it runs.

The store defines what it needs from an access policy; `service.access` implements it per
request (who asks, under which consents). Because the policy yields SQL predicates, totals,
paging, includes, chains and history only ever see rows the caller may see: nothing is
filtered after the query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class WriteIntent:
    """What a write would store, so a policy can decide before anything is written."""

    action: str  # create | update | delete
    resource_type: str
    resource: dict[str, Any] | None
    patients: frozenset[str]
    labels: frozenset[tuple[str, str]]
    client_id: bool = False
    """A create under an id the client chose (update as create): whoever may choose ids can
    tell a taken id from a free one, so policies may reserve it (`service.access.client_ids`)."""
    previous: dict[str, Any] | None = None
    """The current content an update or delete replaces (None for a create, or when it was
    deleted): a policy judges both, so that re-pointing someone else's resource is caught."""
    previous_patients: frozenset[str] = frozenset()
    """The records the replaced content belongs to."""


class AccessPolicy(Protocol):
    async def open(self, conn: AsyncConnection, snapshot: bool = True) -> None:
        """The request's transaction has begun: read what the decisions depend on (the
        caller's roles, the patient's consents) in it, so they hold for exactly this
        transaction and nothing is kept between requests. `snapshot`: every statement of the
        transaction sees the same state (otherwise a later statement may see commits that
        happened after this read)."""

    def visible(self, pk: Any, resource_type: Any) -> ColumnElement[bool] | None:
        """A predicate over a resource primary-key column (and its type column) that is true
        for rows the caller may read; None means no restriction. It may contain bind
        parameters without values: the store executes it with `parameters`. The key is
        `resource.pk` or `resource_version.resource_pk` (of any alias): the policy judges the
        version that row holds, by the `version_id` of the same table."""

    @property
    def parameters(self) -> Mapping[str, Any]:
        """Values of the named bind parameters in `visible`'s predicates, for this request."""

    def check_write(self, intent: WriteIntent) -> None:
        """Raise FhirError when the caller may not perform this write."""

    def check_type(self, resource_type: str | None, action: str) -> None:
        """Raise FhirError when the caller may not use this resource type at all."""

    def check_operation(self, name: str) -> None:
        """Raise FhirError when the caller's role may not call operation `$name` at all (some
        operations' outcomes are only for the roles that may act on them). Called after `open`."""

    def may_read(self, patient: str, resource_type: str, categories: frozenset[str]) -> bool:
        """Whether the caller's access as granted (scopes, consents, rules; never the data
        itself) covers reading every resource of this type with these data categories in this
        patient's record. Operations that derive conclusions use it to report "not assessable
        with your access" instead of mistaking data they cannot see for data that is absent."""

    # -- the request's life cycle (as HAPI's consent contract: start, see, complete) ------
    def start(self, interaction: str, query: str | None = None,
              target: tuple[str, str] | None = None) -> None:
        """The interaction about to run (for the audit record)."""

    def seen(self, resources: list[Any], wrote: bool = False) -> None:
        """Resources the store returned to (or wrote for) the caller."""

    def counted(self, patients: set[str]) -> None:
        """Patients whose records held rows a count-only answer (`_summary=count`,
        `_count=0`) was computed from: the caller learned about them without a resource."""

    @property
    def audited(self) -> bool:
        """Whether `complete` may write (so SQLite opens the transaction for writing)."""

    async def complete(self, store: Any, status: int, detail: str | None = None) -> None:
        """Called once at the end, inside the transaction on success, in a new one on failure."""


class PolicyBase:
    """A policy that restricts nothing and records nothing; policies override what they need."""

    async def open(self, conn: AsyncConnection, snapshot: bool = True) -> None:
        return None

    @property
    def parameters(self) -> Mapping[str, Any]:
        return {}

    def visible(self, pk: Any, resource_type: Any) -> ColumnElement[bool] | None:
        return None

    def check_write(self, intent: WriteIntent) -> None:
        return None

    def check_type(self, resource_type: str | None, action: str) -> None:
        return None

    def check_operation(self, name: str) -> None:
        return None

    def may_read(self, patient: str, resource_type: str, categories: frozenset[str]) -> bool:
        return True

    def start(self, interaction: str, query: str | None = None,
              target: tuple[str, str] | None = None) -> None:
        return None

    def seen(self, resources: list[Any], wrote: bool = False) -> None:
        return None

    def counted(self, patients: set[str]) -> None:
        return None

    @property
    def audited(self) -> bool:
        return False

    async def complete(self, store: Any, status: int, detail: str | None = None) -> None:
        return None


class SystemAccess(PolicyBase):
    """Unrestricted access: the store's own maintenance, migrations and demo loading."""
