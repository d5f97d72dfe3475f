"""`column IN <a list bound as one parameter>`, on PostgreSQL and SQLite alike.

An expanding `IN (:a, :b, ...)` sends one parameter per value and renders new SQL for every
length: a professional with consents from 2,000 patients would send 2,000 parameters with every
query (and more than 32,767 is refused by both databases). Bound as one JSON text instead, the
SQL text never changes, the database keeps one prepared statement for it, and the list may be
long:

- PostgreSQL: `jsonb_exists((SELECT CAST(:name AS JSONB)), column)`, the value a JSON object
  whose keys are the strings. The object is read once per execution (an uncorrelated
  sub-select), a key is found by binary search, and the planner never sees the values. (A
  native array was slower three ways: planning a custom plan over a 1,000-value array constant
  took 5 ms, the driver inspects every element when it binds one, 1.7 ms for 1,000, and `= ANY`
  compares a row with every element.)
- SQLite: `column IN (SELECT value FROM json_each(:name))`, evaluated once per statement into
  an index.

A short list that is probed by its values (a caller's few references, each a primary-key lookup)
is `in_short_list`: a native array on PostgreSQL (`column = ANY(:name)`, an index probe per
value, where a JSON object would have to be tested against every row), the same JSON text on
SQLite. Either way the SQL is rendered once, where an expanding IN is rendered again on every
execution (0.1-0.2 ms of Python per statement, measured).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import orjson
from sqlalchemy import Boolean, String, TypeDecorator, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine


class Strings(tuple[str, ...]):
    """A list of strings that is bound again and again (a consent plan's groups of patients,
    kept for as long as the caller's consents stand): its JSON forms are made once, not for
    every statement it is bound to."""

    @cached_property
    def json_object(self) -> str:
        return orjson.dumps(dict.fromkeys(self, 1)).decode()

    @cached_property
    def json_array(self) -> str:
        return orjson.dumps(list(self)).decode()


class StringList(TypeDecorator[list[str]]):
    """A list of strings bound as one JSON text value."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        strings = value if isinstance(value, Strings) else Strings(value or ())
        if dialect.name == "postgresql":  # an object: its keys are looked up by binary search
            return strings.json_object
        return strings.json_array


class InBoundList(ColumnElement[bool]):
    """True when `column` equals one of the strings bound to the parameter `name`."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]
    list_type: Callable[[], TypeDecorator[list[str]]] = StringList

    def __init__(self, column: Any, name: str) -> None:
        self.column = column
        self.values = bindparam(name, type_=self.list_type())


class ShortStringList(TypeDecorator[list[str]]):
    """A short list of strings: a text array on PostgreSQL, JSON text elsewhere."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(String()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return list(value or [])
        return orjson.dumps(list(value or [])).decode()


class InShortList(InBoundList):
    """True when `column` equals one of the few strings bound to the parameter `name`."""

    inherit_cache = True
    list_type = ShortStringList


@compiles(InBoundList, "postgresql")
def _postgresql(element: InBoundList, compiler: Any, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    if isinstance(element, InShortList):
        return f"{column} = ANY({values})"
    return f"jsonb_exists((SELECT CAST({values} AS JSONB)), {column})"


@compiles(InBoundList)
def _default(element: InBoundList, compiler: Any, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} IN "
            f"(SELECT value FROM json_each({compiler.process(element.values, **kw)}))")


def in_bound_list(column: Any, name: str) -> ColumnElement[bool]:
    return InBoundList(column, name)


def in_short_list(column: Any, name: str) -> ColumnElement[bool]:
    return InShortList(column, name)
