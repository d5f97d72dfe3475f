"""Compile a SearchRequest into SQL over the index tables.

Each criterion becomes an EXISTS over its index table, correlated with the resource row; the
caller's access predicate is ANDed onto every resource row the query touches (the matched
rows, chain targets and `_has` sources), so the database returns only what may be seen.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    intersect,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql import FromClause

from ...fhir import dates, ucum
from ...fhir.outcome import bad_request
from ..indexer import normalize, parse_reference
from ..searchparams import SearchParam
from ..tables import INDEX_TABLES, Resource, ResourceLabel
from .or_lists import any_of, in_values, token_any
from .parser import split_prefix
from .request import Criterion, SortKey

RES = Resource.__table__
LABEL = ResourceLabel.__table__
FOLD_AT = 6
"""Up to this many `pk IN (rows)` criteria stay one semi-join each (the planner orders them
well); more are folded into one INTERSECT, planned and run in time linear in their number."""


class Compiler:
    """Builds predicates for one request; `visible` is the caller's access predicate factory."""

    def __init__(self, visible: Any, base_url: str = "") -> None:
        self.visible = visible
        self.base_url = base_url

    # -- entry points -------------------------------------------------------------------
    def where(self, r: FromClause, resource_type: str | None, criteria: list[Criterion]) -> list[
        ColumnElement[bool]
    ]:
        clauses: list[ColumnElement[bool]] = [r.c.deleted == false()]
        if resource_type:
            clauses.append(r.c.resource_type == resource_type)
        access = self.visible(r.c.pk, r.c.resource_type)
        if access is not None:
            clauses.append(access)
        members = [c for c in criteria if _is_member(c)]
        if len(members) <= FOLD_AT:
            clauses.extend(self.criterion(r, c, resource_type) for c in criteria)
            return clauses
        # Many criteria: one `pk IN (q1 INTERSECT q2 ...)` instead of one semi-join each, which
        # PostgreSQL planned in time growing steeply (40 -> 0.8 s, 80 -> 4.4 s, 500 -> minutes).
        clauses.append(r.c.pk.in_(intersect(*[self.member_rows(c) for c in members])))
        clauses.extend(self.criterion(r, c, resource_type) for c in criteria
                       if not _is_member(c))
        return clauses

    def member_rows(self, c: Criterion) -> Any:
        """The rows of a criterion that is `pk IN (rows)` (`_is_member`)."""
        if c.chain is not None:
            return self._chain_rows(c)
        assert c.param is not None
        i = INDEX_TABLES[c.param.type].alias()
        return select(i.c.resource_pk).where(
            i.c.param == c.param.key, self._values(c.param, c.modifier, i, c.values))

    # Criteria compile to `pk IN (SELECT resource_pk FROM idx_... WHERE ...)`: uncorrelated
    # subqueries that both SQLite and PostgreSQL drive from the index, where a correlated
    # EXISTS makes SQLite scan every resource of the type (docs/benchmarks.md).
    def criterion(self, r: FromClause, c: Criterion, rtype: str | None = None) -> ColumnElement[bool]:
        if c.has is not None:
            return self._has(r, c, rtype)
        if c.chain is not None:
            return self._chain(r, c)
        assert c.param is not None
        code = c.param.code
        if code == "_id":
            return self._id(r, c)
        if code == "_lastUpdated":
            return self._last_updated(r, c)
        if code == "_security":
            return self._security(r, c)
        table = INDEX_TABLES[c.param.type]
        i = table.alias()
        key = c.param.key

        def rows(*conds: ColumnElement[bool]) -> Any:
            return select(i.c.resource_pk).where(i.c.param == key, *conds)

        if c.modifier == "missing":
            present = r.c.pk.in_(rows())
            return not_(present) if c.values == ["true"] else present
        if c.modifier == "not":
            return r.c.pk.notin_(rows(self._values(c.param, None, i, c.values)))
        prefixed_ne = [v for v in c.values if split_prefix(v)[0] == "ne"] if c.param.type in (
            "date", "number", "quantity") else []
        if prefixed_ne and len(prefixed_ne) == len(c.values):
            # `ne`: no indexed value equals the given one (R4 3.1.1.4.1).
            match = self._values(c.param, None, i, ["eq" + split_prefix(v)[1] for v in prefixed_ne])
            return and_(r.c.pk.in_(rows()), r.c.pk.notin_(rows(match)))
        return r.c.pk.in_(self.member_rows(c))

    # -- special parameters -------------------------------------------------------------
    def _id(self, r: FromClause, c: Criterion) -> ColumnElement[bool]:
        if c.modifier == "missing":
            return false() if c.values == ["true"] else true()
        cond = in_values(r.c.id, c.values)
        return not_(cond) if c.modifier == "not" else cond

    def _last_updated(self, r: FromClause, c: Criterion) -> ColumnElement[bool]:
        if c.modifier == "missing":  # every stored resource has one
            return true() if c.values == ["false"] else false()
        col = r.c.last_updated
        return any_of([_range_match(col, col, v) for v in c.values])

    def _security(self, r: FromClause, c: Criterion) -> ColumnElement[bool]:
        lab = LABEL.alias()
        if c.modifier == "missing":
            present = r.c.pk.in_(select(lab.c.resource_pk))
            return not_(present) if c.values == ["true"] else present
        system = func.nullif(lab.c.system, "")  # labels store "no system" as ""
        match = token_any(system, lab.c.code, c.values)
        found = r.c.pk.in_(select(lab.c.resource_pk).where(match))
        return not_(found) if c.modifier == "not" else found

    def _chain(self, r: FromClause, c: Criterion) -> ColumnElement[bool]:
        return r.c.pk.in_(self._chain_rows(c))

    def _chain_rows(self, c: Criterion) -> Any:
        assert c.chain is not None
        ch = c.chain
        ref = INDEX_TABLES["reference"].alias()
        t = RES.alias()
        per_type = [and_(t.c.resource_type == target, self.criterion(t, inner, target))
                    for target, inner in ch.targets.items()]
        conds = [
            ref.c.param == ch.reference.key,
            t.c.resource_type == ref.c.target_type,
            t.c.id == ref.c.target_id,
            t.c.deleted == false(),
            or_(*per_type),
        ]
        access = self.visible(t.c.pk, t.c.resource_type)
        if access is not None:
            conds.append(access)
        return select(ref.c.resource_pk).where(*conds)

    def _has(self, r: FromClause, c: Criterion, rtype: str | None) -> ColumnElement[bool]:
        assert c.has is not None
        h = c.has
        ref = INDEX_TABLES["reference"].alias()
        s = RES.alias()
        conds = [
            s.c.resource_type == h.source_type,
            s.c.deleted == false(),
            ref.c.resource_pk == s.c.pk,
            ref.c.param == h.reference.key,
            ref.c.target_type == (rtype if rtype else r.c.resource_type),
            self.criterion(s, h.criterion, h.source_type),
        ]
        access = self.visible(s.c.pk, s.c.resource_type)
        if access is not None:
            conds.append(access)
        return r.c.id.in_(select(ref.c.target_id).where(*conds))

    # -- the ORed values of one typed parameter --------------------------------------------
    def _values(self, p: SearchParam, modifier: str | None, i: Any,
                values: list[str]) -> ColumnElement[bool]:
        """All values of one criterion: equalities as one IN per shape, the rest a balanced OR
        (`or_lists`), so 1,000 values neither overflow SQLite nor multiply the plan."""
        if p.type == "token" and modifier != "text":
            return token_any(i.c.system, i.c.code, values)
        if p.type == "string" and modifier == "exact":
            return in_values(i.c.value_exact, values)
        if p.type == "uri" and modifier is None:
            return in_values(i.c.value, values)
        if p.type == "reference" and modifier != "identifier":
            return self._references(p, i, values, modifier)
        return any_of([self._value(p, modifier, i, v) for v in values])

    def _references(self, p: SearchParam, i: Any, values: list[str],
                    modifier: str | None) -> ColumnElement[bool]:
        """Plain references grouped by their possible target types: one IN over the ids each."""
        parts: list[ColumnElement[bool]] = []
        by_types: dict[tuple[str, ...], list[str]] = {}
        for value in values:
            rtype, rid, url = (None, value, None) if "/" not in value and ":" not in value \
                else parse_reference(value, self.base_url)
            if rid is None:  # a canonical URL, or what no reference can be
                parts.append(self._reference_match(p, i, value, modifier))
                continue
            types = [modifier] if modifier else ([rtype] if rtype else list(p.targets))
            by_types.setdefault(tuple(types), []).append(rid)
        for target_types, ids in by_types.items():
            cond = in_values(i.c.target_id, ids)
            parts.append(and_(cond, i.c.target_type.in_(target_types)) if target_types else cond)
        return any_of(parts)

    # -- one value of one typed parameter -------------------------------------------------
    def _value(self, p: SearchParam, modifier: str | None, i: Any, value: str) -> ColumnElement[bool]:
        kind = p.type
        if kind == "token":
            return token_match(i.c.system, i.c.code, i.c.text, value, modifier)
        if kind == "string":
            if modifier == "exact":
                return i.c.value_exact == value
            norm = _escape_like(normalize(value))
            pattern = f"%{norm}%" if modifier == "contains" else f"{norm}%"
            return i.c.value_norm.like(pattern, escape="\\")
        if kind == "date":
            return _range_match(i.c.low, i.c.high, value)
        if kind == "number":
            prefix, raw = split_prefix(value)
            return _number_match(i.c.value, prefix, raw)
        if kind == "quantity":
            return _quantity_match(i, value)
        if kind == "reference":
            return self._reference_match(p, i, value, modifier)
        if kind == "uri":
            if modifier == "below":
                return i.c.value.like(_escape_like(value) + "%", escape="\\")
            if modifier == "above":
                return literal(value).like(func.replace(i.c.value, "%", "\\%") + "%", escape="\\")
            return i.c.value == value
        raise bad_request(f"Search on parameters of type {kind} is not supported")

    def _reference_match(
        self, p: SearchParam, i: Any, value: str, modifier: str | None
    ) -> ColumnElement[bool]:
        if modifier == "identifier":
            system, sep, code = value.partition("|")
            if not sep:
                return i.c.identifier_value == value
            conds = [i.c.identifier_value == code] if code else []
            conds.append(i.c.identifier_system == system if system else
                         i.c.identifier_system.is_(None))
            return and_(*conds)
        rtype: str | None
        rid: str | None
        url: str | None
        if "/" not in value and ":" not in value:
            rtype, rid, url = None, value, None
        else:
            rtype, rid, url = parse_reference(value, self.base_url)
        if url and rid is None:
            return i.c.url == url.split("|")[0]
        types = [modifier] if modifier else ([rtype] if rtype else list(p.targets))
        conds = [i.c.target_id == rid]
        if types:
            conds.append(i.c.target_type.in_(types))
        return and_(*conds)

    # -- sorting --------------------------------------------------------------------------
    def sort_expr(self, r: FromClause, key: SortKey) -> ColumnElement[Any]:
        """A scalar expression per sort key; missing values sort last in both directions."""
        if key.name == "_id":
            return r.c.id
        if key.name == "_lastUpdated":
            return r.c.last_updated
        p = key.param
        assert p is not None
        table = INDEX_TABLES[p.type]
        col_name = {
            "date": "high" if key.descending else "low",
            "string": "value_norm",
            "token": "code",
            "number": "value",
            "quantity": "value",
            "reference": "target_id",
            "uri": "value",
        }[p.type]
        i = table.alias()
        col = i.c[col_name]
        agg = func.max(col) if key.descending else func.min(col)
        sub = (
            select(agg)
            .where(and_(i.c.resource_pk == r.c.pk, i.c.param == p.key))
            .scalar_subquery()
        )
        return func.coalesce(sub, _sentinel(p.type, key.descending))


def _is_member(c: Criterion) -> bool:
    """Whether the criterion compiles to `pk IN (rows)`: a chain or a plain typed match."""
    if c.chain is not None:
        return True
    if c.has is not None or c.param is None:
        return False
    if c.param.code in ("_id", "_lastUpdated", "_security") or c.modifier in ("missing", "not"):
        return False
    return not (c.param.type in ("date", "number", "quantity")
                and all(split_prefix(v)[0] == "ne" for v in c.values))


def _sentinel(kind: str, descending: bool) -> Any:
    if kind == "date":
        return literal(dates.MIN_DT if descending else dates.MAX_DT)
    if kind in ("number", "quantity"):
        return literal(-1e300 if descending else 1e300)
    return literal("" if descending else "\uffff\uffff")


def sentinel_value(kind: str, descending: bool) -> Any:
    if kind == "date":
        return dates.MIN_DT if descending else dates.MAX_DT
    if kind in ("number", "quantity"):
        return -1e300 if descending else 1e300
    return "" if descending else "\uffff\uffff"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def token_match(system_col: Any, code_col: Any, text_col: Any, value: str,
                modifier: str | None = None) -> ColumnElement[bool]:
    """Token search semantics (`code`, `system|code`, `|code`, `system|`, `:text`) as SQL."""
    if modifier == "text":
        if text_col is None:
            return false()
        return text_col.like(f"%{_escape_like(normalize(value))}%", escape="\\")
    if "|" not in value:
        return code_col == value
    system, _, code = value.partition("|")
    if system and code:
        return and_(system_col == system, code_col == code)
    if system:
        return system_col == system
    return and_(code_col == code, system_col.is_(None))


def _range_match(low: Any, high: Any, value: str) -> ColumnElement[bool]:
    """Range semantics of R4 3.1.1.4.2 between the indexed [low, high] and the value's range."""
    prefix, raw = split_prefix(value)
    p_low, p_high = dates.parse_range(raw)
    if prefix == "eq":
        return and_(low >= p_low, high <= p_high)
    if prefix == "ne":
        return or_(low < p_low, high > p_high)
    if prefix == "gt":
        return high > p_high
    if prefix == "lt":
        return low < p_low
    if prefix == "ge":
        return high >= p_low
    if prefix == "le":
        return low <= p_high
    if prefix == "sa":
        return low > p_high
    if prefix == "eb":
        return high < p_low
    # ap: within 10 % of the distance to now, at least a day, on either side.
    now = dates.utcnow()
    gap = abs((now - p_low).total_seconds()) * 0.1
    margin = timedelta(seconds=max(gap, 86400))
    upper = p_high + min(margin, dates.MAX_DT - p_high)  # no overflow past year 9999 or 1
    lower = p_low - min(margin, p_low - dates.MIN_DT)
    return and_(low <= upper, high >= lower)


def _precision_bounds(raw: str) -> tuple[float, float]:
    """The implicit range of a decimal: `100` means [99.5, 100.5), `1.0` [0.95, 1.05)."""
    number = float(raw)
    mantissa, _, exponent = raw.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    half = 0.5 * 10 ** (-decimals) * (10 ** int(exponent) if exponent else 1)
    return number - half, number + half


def _number_match(col: Any, prefix: str, raw: str, factor: float = 1.0) -> ColumnElement[bool]:
    """Compare an indexed number with a search value, scaled by `factor` (unit conversion)."""
    number = float(raw) * factor
    lo, hi = (b * factor for b in _precision_bounds(raw))
    if prefix == "eq":
        return and_(col >= lo, col < hi)
    if prefix == "ne":
        return or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col > number
    if prefix in ("lt", "eb"):
        return col < number
    if prefix == "ge":
        return col >= number
    if prefix == "le":
        return col <= number
    margin = abs(number) * 0.1
    return and_(col >= number - margin, col <= number + margin)


def _quantity_match(i: Any, value: str) -> ColumnElement[bool]:
    """`[prefix]number|system|code`; UCUM units compare in canonical form (R4 3.1.1.4.5)."""
    prefix, rest = split_prefix(value)
    parts = rest.split("|")
    number_text = parts[0]
    system = parts[1] if len(parts) > 1 else ""
    code = parts[2] if len(parts) > 2 else ""
    if system == ucum.UCUM_SYSTEM and code:
        canon = ucum.canonical(code)
        if canon is not None:
            factor, unit = canon
            return and_(
                i.c.canonical_unit == unit,
                _number_match(i.c.canonical_value, prefix, number_text, factor),
            )
    conds = [_number_match(i.c.value, prefix, number_text)]
    if code:
        conds.append(or_(i.c.code == code, i.c.unit == code))
    if system:
        conds.append(i.c.system == system)
    return and_(*conds)


def ordered(stmt: Select[Any], exprs: list[tuple[ColumnElement[Any], bool]]) -> Select[Any]:
    return stmt.order_by(*[e.desc() if d else e.asc() for e, d in exprs])
