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

from ..runtime import Runtime
from ..store import subscriptions as rows
from ..store.access import AccessPolicy
from ..store.records import StoredResource
from ..store.repository import R, ResourceStore
from ..store.search.compiler import Compiler
from .owner import owner_policy
from .spec import FILTER


def interaction_of(change: StoredResource) -> str:
    if change.deleted:
        return "delete"
    return "create" if change.version_id == 1 else "update"


def subscriber_filters(content: str) -> dict[str, list[tuple[str, str]]]:
    """The stored Subscription's filters (checked when it was written), by resource type."""
    resource = orjson.loads(content)
    out: dict[str, list[tuple[str, str]]] = {}
    for e in (resource.get("_criteria") or {}).get("extension") or []:
        if e.get("url") == FILTER and isinstance(e.get("valueString"), str):
            rtype, _, query = e["valueString"].partition("?")
            out.setdefault(rtype, []).extend(parse_qsl(query, keep_blank_values=True))
    return out


async def record_events(rt: Runtime, store: ResourceStore) -> None:
    changes = [c for c in store.changes if c.resource_type in rt.trigger_types]
    if not changes:
        return
    written = {c.resource_type for c in changes}
    topics = [url for url, t in rt.topics.items() if t.resource_types & written]
    live = await rows.live_for_topics(store.conn, topics)
    for sub in live:
        topic = rt.topics[sub["topic"]]
        filters = subscriber_filters(sub["content"])
        policy: AccessPolicy | None = None
        matched: list[rows.Change] = []
        for change in changes:
            trigger = topic.trigger_for(change.resource_type)
            interaction = interaction_of(change)
            if trigger is None or interaction not in trigger.interactions:
                continue
            if policy is None:
                policy = await owner_policy(sub["owner"], rt)
                await policy.open(store.conn, snapshot=False)
            pairs = _pairs(trigger.current) + filters.get(change.resource_type, [])
            if await _matches(rt, store, policy, change, pairs):
                matched.append(rows.Change(interaction, change.resource_type, change.id,
                                           change.version_id, change.last_updated))
        if matched:
            await rows.append_events(store.conn, sub["id"], matched)


def _pairs(query: str | None) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True) if query else []


async def _matches(rt: Runtime, store: ResourceStore, policy: AccessPolicy,
                   change: StoredResource, pairs: list[tuple[str, str]]) -> bool:
    """Whether the written version matches the criteria and the owner may see it now."""
    req = rt.parser.parse(change.resource_type, pairs)
    where = Compiler(policy.visible, rt.base_url).where(R, change.resource_type, req.criteria)
    stmt: Any = select(R.c.pk).where(R.c.pk == change.pk, R.c.version_id == change.version_id,
                                     *where)
    found = (await store.conn.execute(stmt, dict(policy.parameters))).first()
    return found is not None
