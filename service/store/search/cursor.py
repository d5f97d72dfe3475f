"""Keyset cursors for paging that survives concurrent writes.

A page link carries the sort values of the row it continues from, not an offset: rows
inserted or deleted elsewhere never shift a page, so a client walking `next` links sees each
unchanged match once.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, or_

from ...fhir.outcome import bad_request
from .request import SortKey


@dataclass
class Cursor:
    values: list[Any]
    backwards: bool


def signature(sort: list[SortKey]) -> str:
    """The ordering a cursor is a position in; a cursor replayed on another ordering is refused."""
    return ",".join(("-" if k.descending else "") + k.name for k in sort)


def encode(values: list[Any], backwards: bool, order: str = "") -> str:
    packed = [{"d": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = orjson.dumps({"v": packed, "b": backwards, "s": order})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, order: str = "") -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        values = [
            datetime.fromisoformat(v["d"]) if isinstance(v, dict) else v for v in data["v"]
        ]
        cursor = Cursor(values, bool(data["b"]))
        same_order = data.get("s", "") == order
    except Exception as exc:  # noqa: BLE001 - any damage to the token is the client's error
        raise bad_request("The paging cursor is not valid", "_cursor") from exc
    if not same_order:
        raise bad_request("The paging cursor belongs to a search with another _sort", "_cursor")
    return cursor


def _fits(value: Any, expr: ColumnElement[Any]) -> bool:
    """Whether a cursor value can be compared with a sort expression (a forged cursor may not)."""
    try:
        expected = expr.type.python_type
    except NotImplementedError:
        return True
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def after(keys: list[tuple[ColumnElement[Any], bool]], values: list[Any],
          backwards: bool) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order of `keys` (or before, when backwards)."""
    if len(values) != len(keys) or not all(_fits(v, e) for v, (e, _) in zip(values, keys,
                                                                             strict=True)):
        raise bad_request("The paging cursor does not belong to this search", "_cursor")
    clauses = []
    for i, (expr, desc) in enumerate(keys):
        forward_gt = desc == backwards  # ascending and forwards, or descending and backwards
        step = expr > values[i] if forward_gt else expr < values[i]
        clauses.append(and_(*[keys[j][0] == values[j] for j in range(i)], step))
    return or_(*clauses)
