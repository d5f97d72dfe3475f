"""Comma-separated values (`code=a,b,c`) as SQL whose expression tree does not grow per value.

A naive `x = a OR x = b OR ...` nests one level per value: SQLite refuses an expression more than
1,000 levels deep ("Expression tree is too large"), so 600 codes were a 500, and PostgreSQL plans
every arm. Values of the same shape become one `IN` over a list bound as ONE parameter
(`bound_list`: `= ANY(array)` on PostgreSQL, `json_each` on SQLite, both index probes), and
whatever is left (date ranges, prefixes, LIKE patterns) is ORed as a balanced tree, so the depth
is the logarithm of the number of values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Boolean, ColumnElement, and_, bindparam, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from ..bound_list import InShortList, ShortStringList

_FLAT = 8
"""Up to this many arms are ORed flat (the SQL of ordinary searches stays as it was)."""


class InValues(InShortList):
    """`column IN (values)` with the values bound as one anonymous parameter."""

    inherit_cache = True

    def __init__(self, column: Any, values: Sequence[str]) -> None:
        self.column = column
        self.values = bindparam(None, value=list(values), type_=ShortStringList(), unique=True)


class _Parenthesised(ColumnElement[bool]):
    """`(clause)`, always: SQLAlchemy flattens nested ORs (and drops their groupings), which
    would give the database the deep left-leaning tree again."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("clause", InternalTraversal.dp_clauseelement)]

    def __init__(self, clause: ColumnElement[bool]) -> None:
        self.clause = clause

    @property
    def _from_objects(self) -> list[Any]:
        return self.clause._from_objects


@compiles(_Parenthesised)
def _parenthesised(element: _Parenthesised, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clause, **kw)})"


def in_values(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """`column = v` for one value, one bound-list IN for more."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        result: ColumnElement[bool] = column == distinct[0]
        return result
    return InValues(column, distinct)


def any_of(parts: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """OR of `parts` as a balanced tree of parenthesised halves."""
    if len(parts) <= _FLAT:
        return or_(*parts)
    mid = len(parts) // 2
    return or_(_Parenthesised(any_of(parts[:mid])), _Parenthesised(any_of(parts[mid:])))


def token_any(system_col: Any, code_col: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """Token values (`code`, `system|code`, `|code`, `system|`) grouped by shape and system:
    one IN over the codes per system, so the tree grows with the systems, not the codes."""
    plain: list[str] = []
    no_system: list[str] = []
    system_only: list[str] = []
    by_system: dict[str, list[str]] = {}
    for value in values:
        if "|" not in value:
            plain.append(value)
            continue
        system, _, code = value.partition("|")
        if system and code:
            by_system.setdefault(system, []).append(code)
        elif system:
            system_only.append(system)
        else:
            no_system.append(code)
    parts: list[ColumnElement[bool]] = []
    if plain:
        parts.append(in_values(code_col, plain))
    parts.extend(and_(system_col == system, in_values(code_col, codes))
                 for system, codes in by_system.items())
    if system_only:
        parts.append(in_values(system_col, system_only))
    if no_system:
        parts.append(and_(in_values(code_col, no_system), system_col.is_(None)))
    return any_of(parts)
