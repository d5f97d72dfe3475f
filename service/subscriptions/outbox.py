"""Write the events of a committing change into the outbox, in its own transaction.

Run by `Runtime.store` after the store's last flush and before the commit (`commit_hooks`):
what the transaction wrote is in the database, so matching is a query like any search. For
each live subscription on a topic the written types trigger, a written version becomes an
event when, under the owner's access policy opened in this very transaction, it matches the
topic's query and the subscriber's filters and is visible to the owner: one statement per
(subscription, version). A professional whose consent was withdrawn gets no row at all.

Cost without subscriptions: nothing for a transaction that wrote no trigger type, and one
indexed query (`subscription` by topic and status) for one that did.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import select

from ..conformance.topics import Topic
from ..runtime import Runtime
from ..store import subscriptions as rows
from ..store.access import AccessPolicy
from ..store.records import StoredResource
from ..store.repository import COMP, R, ResourceStore
from ..store.search.compiler import Compiler
from .owner import owner_policy
from .spec import FILTER


def interaction_of(change: StoredResource) -> str:
    if change.deleted:
        return "delete"
    return "create" if change.version_id == 1 else "update"


def subscriber_filters(content: str, topic: Topic) -> dict[str, list[tuple[str, str]]]:
    """The stored Subscription's filters (checked when it was written), by resource type; a
    filter without a type belongs to the topic's one trigger type (`spec._filters`)."""
    resource = orjson.loads(content)
    out: dict[str, list[tuple[str, str]]] = {}
    for e in (resource.get("_criteria") or {}).get("extension") or []:
        if e.get("url") == FILTER and isinstance(e.get("valueString"), str):
            rtype, sep, query = e["valueString"].partition("?")
            if not sep:
                rtype, query = next(iter(sorted(topic.resource_types))), e["valueString"]
            out.setdefault(rtype, []).extend(parse_qsl(query, keep_blank_values=True))
    return out


async def record_events(rt: Runtime, store: ResourceStore) -> None:
    changes = [c for c in store.changes if c.resource_type in rt.trigger_types]
    if not changes:
        return
    written = {c.resource_type for c in changes}
    topics = [url for url, t in rt.topics.items() if t.resource_types & written]
    live = await rows.live_for_topics(store.conn, topics)
    if not live:
        return
    records = await _records(store, changes)
    for sub in live:
        topic = rt.topics[sub["topic"]]
        filters = subscriber_filters(sub["content"], topic)
        policy: AccessPolicy | None = None
        matched: list[rows.Change] = []
        for change in changes:
            trigger = topic.trigger_for(change.resource_type)
            interaction = interaction_of(change)
            if trigger is None or interaction not in trigger.interactions:
                continue
            if not _in_filtered_record(filters.get(change.resource_type, []),
                                       records.get(change.pk, set())):
                continue
            pairs = _pairs(trigger.current) + filters.get(change.resource_type, [])
            # First the criteria alone (no policy to build): most subscriptions are about
            # another patient. Then, for a match, the owner's access as it is now.
            if not await _matches(rt, store, None, change, pairs):
                continue
            if policy is None:
                policy = await owner_policy(sub["owner"], rt)
                await policy.open(store.conn, snapshot=False)
            if await _matches(rt, store, policy, change, pairs):
                matched.append(rows.Change(interaction, change.resource_type, change.id,
                                           change.version_id, change.last_updated))
        if matched:
            await rows.append_events(store.conn, sub["id"], matched)


def _pairs(query: str | None) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True) if query else []


async def _records(store: ResourceStore, changes: list[StoredResource]) -> dict[int, set[str]]:
    """pk -> the patients whose records the written resources are in (one query)."""
    out: dict[int, set[str]] = {}
    found = await store.conn.execute(select(COMP.c.resource_pk, COMP.c.patient_id).where(
        COMP.c.resource_pk.in_(sorted({c.pk for c in changes}))))
    for pk, patient in found:
        out.setdefault(pk, set()).add(patient)
    return out


def _in_filtered_record(filters: list[tuple[str, str]], patients: set[str]) -> bool:
    """False when a `patient` filter names none of the records the resource is in: the cheap
    test that spares most subscriptions (those about other patients) any query. Only a
    shortcut: what passes is still matched by the full criteria."""
    for name, value in filters:
        if name == "patient":
            wanted = {v.strip().removeprefix("Patient/") for v in value.split(",")}
            if not wanted & patients:
                return False
    return True


def _unrestricted(pk: Any, resource_type: Any) -> None:
    return None


async def _matches(rt: Runtime, store: ResourceStore, policy: AccessPolicy | None,
                   change: StoredResource, pairs: list[tuple[str, str]]) -> bool:
    """Whether the written version matches the criteria (and, with the owner's `policy`,
    whether the owner may see it now)."""
    req = rt.parser.parse(change.resource_type, pairs)
    visible = policy.visible if policy is not None else _unrestricted
    where = Compiler(visible, rt.base_url).where(R, change.resource_type, req.criteria)
    stmt: Any = select(R.c.pk).where(R.c.pk == change.pk, R.c.version_id == change.version_id,
                                     *where)
    params = dict(policy.parameters) if policy is not None else {}
    found = (await store.conn.execute(stmt, params)).first()
    return found is not None
