"""`column IN <a list bound as one parameter>`, on PostgreSQL and SQLite alike.

An expanding `IN (:a, :b, ...)` sends one parameter per value and renders new SQL for every
length: a professional with consents from 2,000 patients would send 2,000 parameters with every
query (and more than 32,767 is refused by both databases). Bound as one value instead, the SQL
text never changes, PostgreSQL keeps one prepared statement for it, and the list may be long:

- PostgreSQL: `column = ANY(CAST(:name AS VARCHAR[]))`, the value a list of strings;
- SQLite: `column IN (SELECT value FROM json_each(:name))`, the value a JSON array.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Boolean, String, TypeDecorator, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class StringList(TypeDecorator[list[str]]):
    """A list of strings as one bound value: an array on PostgreSQL, JSON text elsewhere."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(String()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        values = [str(v) for v in (value or [])]
        return values if dialect.name == "postgresql" else orjson.dumps(values).decode()


class InBoundList(ColumnElement[bool]):
    """True when `column` equals one of the strings bound to the parameter `name`."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: Any, name: str) -> None:
        self.column = column
        self.values = bindparam(name, type_=StringList())


@compiles(InBoundList, "postgresql")
def _postgresql(element: InBoundList, compiler: Any, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} = "
            f"ANY(CAST({compiler.process(element.values, **kw)} AS VARCHAR[]))")


@compiles(InBoundList)
def _default(element: InBoundList, compiler: Any, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} IN "
            f"(SELECT value FROM json_each({compiler.process(element.values, **kw)}))")


def in_bound_list(column: Any, name: str) -> ColumnElement[bool]:
    return InBoundList(column, name)
