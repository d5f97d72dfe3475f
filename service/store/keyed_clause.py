"""A boolean clause that is built once and tells SQLAlchemy's statement cache who it is.

SQLAlchemy finds the compiled form of a statement by a cache key it derives, on every
execution, by walking the whole statement. An access predicate is a tree of nested sub-selects
(40-120 nodes), built once per access plan and embedded in every statement a caller runs; walking
it again for each statement cost 80 us of the 110 us a search statement's key took (measured),
three times per search with `_include`. `KeyedClause` stands for such a clause in the walk with
a key given when it was built (the plan it came from and the names of the columns it
correlates to), and compiles to the clause itself.

This holds only because of what the key promises: two clauses with the same key compile to the
same SQL with the same constants. Their constants are therefore not reported as parameters of
the statement (the compiled form keeps the values it was compiled with, which are the same), and
every value that differs between requests must be a named parameter supplied at execution.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement, _truncated_label


class KeyedClause(ColumnElement[bool]):
    """`clause`, identified in statement cache keys by `key` alone."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, clause: ColumnElement[bool], key: Hashable) -> None:
        self.clause = clause
        self.cache_identity = key

    @property
    def _from_objects(self) -> list[Any]:
        return self.clause._from_objects

    def get_children(self, **kw: Any) -> list[Any]:
        return [self.clause]

    def _gen_cache_key(self, anon_map: Any, bindparams: list[Any]) -> tuple[Any, ...]:
        return (KeyedClause, self.cache_identity)


@compiles(KeyedClause)
def _compile(element: KeyedClause, compiler: Any, **kw: Any) -> str:
    # Always in parentheses: SQLAlchemy groups an expression by the precedence of its operator,
    # which it cannot see through this wrapper (an OR inside an AND would bind wrongly).
    return f"({compiler.process(element.clause, **kw)})"


def column_name(column: Any) -> str | None:
    """`table.column` as it renders, when that is fixed (a table or an explicitly named alias);
    None for an anonymous alias, whose name depends on the statement around it."""
    table = getattr(column, "table", None)
    names = (getattr(table, "name", None), getattr(column, "name", None))
    if not all(isinstance(n, str) and not isinstance(n, _truncated_label) for n in names):
        return None  # an anonymous name (`_truncated_label`) is numbered per statement
    return f"{names[0]}.{names[1]}"
