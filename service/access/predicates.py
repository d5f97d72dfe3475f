"""Access predicates as plans: what a caller may see, described as data and built into SQL once
per shape.

Why plans: a policy decides per request (who asks, which consents hold now), but building the
SQLAlchemy expression for that decision costs more than the database spends evaluating it:
fresh aliases, operator objects and a new cache key for every statement, several times per
request. A plan is a hashable nested tuple naming the checks and the constants that give the
predicate its shape, e.g.

    ("or", ("not", ("in_record",)),
           ("and", ("in_patients", "consent_g0"), ("type_not_in", ("AuditEvent", "Consent"))))

while the values that change from request to request (whose records, which patient) stay named
bind parameters. `predicate` builds the expression for a plan and an outer key column once and
reuses it; the values travel with each execution (`AccessPolicy.parameters`). Two professionals
whose consents say the same thing share one expression and one compiled statement.

Every check is a correlated EXISTS on the row's own primary key, so the criteria of a search pick
the rows and the access check costs one index probe per row, on SQLite and PostgreSQL alike.

What a check reads about the row's content (its codes, its clinical dates) is read for the
version the row holds: the facts of (resource, `version_id`) in `version_code` and
`version_period`, where `version_id` is the column of the same table as the key (`resource`
for current rows, `resource_version` for vread and history). So an old version is judged by
what it said, not by what the resource says now, and a deletion by what it deleted.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)

from ..store.bound_list import in_bound_list, in_short_list
from ..store.keyed_clause import KeyedClause, column_name
from ..store.search.compiler import token_match
from ..store.tables import (
    ChangeEpoch,
    Compartment,
    IdxReference,
    IdxToken,
    Resource,
    ResourceLabel,
    ResourceVersion,
    VersionCode,
    VersionPeriod,
)

DATA_CATEGORY = "https://pgo-work.nl/fhir/CodeSystem/data-category"

Plan = tuple[Any, ...]
TRUE: Plan = ("true",)
FALSE: Plan = ("false",)
IN_RECORD: Plan = ("in_record",)


# -- composing plans (simplified as they are built, so equal decisions get equal plans) ------
def _combine(op: str, absorbing: Plan, neutral: Plan, plans: tuple[Plan, ...]) -> Plan:
    """`op` ("and"/"or") over `plans`, flattened: `absorbing` decides alone, `neutral` drops out."""
    parts: list[Plan] = []
    for p in plans:
        if p == absorbing:
            return absorbing
        if p != neutral:
            parts.extend(p[1:] if p[0] == op else [p])
    if not parts:
        return neutral
    return parts[0] if len(parts) == 1 else (op, *parts)


def all_of(*plans: Plan) -> Plan:
    return _combine("and", FALSE, TRUE, plans)


def any_of(*plans: Plan) -> Plan:
    return _combine("or", TRUE, FALSE, plans)


def negate(plan: Plan) -> Plan:
    if plan == TRUE:
        return FALSE
    if plan == FALSE:
        return TRUE
    return plan[1] if plan[0] == "not" else ("not", plan)


def type_in(types: frozenset[str] | set[str]) -> Plan:
    return ("type_in", tuple(sorted(types))) if types else FALSE


def type_not_in(types: frozenset[str] | set[str] | list[str]) -> Plan:
    return ("type_not_in", tuple(sorted(types))) if types else TRUE


def type_is(resource_type: str) -> Plan:
    return ("type_is", resource_type)


def labels_within(codes: frozenset[str] | set[str]) -> Plan:
    """Every data-category label the row carries is one of `codes` (a row without any passes)."""
    return ("labels_within", tuple(sorted(codes)))


def labelled(labels: frozenset[tuple[str, str]] | set[tuple[str, str]]) -> Plan:
    """The row carries at least one of these (system, code) labels, of any system."""
    return ("labelled", tuple(sorted(labels))) if labels else FALSE


def labels_any(codes: frozenset[str] | set[str]) -> Plan:
    """The row carries at least one data-category label of `codes`."""
    return ("labels_any", tuple(sorted(codes))) if codes else FALSE


def coded(codes: tuple[tuple[str | None, str], ...]) -> Plan:
    """The row's version has a `<Type>.code` matching one of (system, code); system None
    matches any."""
    return ("coded", tuple(codes)) if codes else FALSE


def data_within(low: datetime, high: datetime) -> Plan:
    """The row's version has a clinical date, and all of its clinical dates lie within
    [low, high] (for a permit: it grants only what it surely covers)."""
    return ("data_within", low, high)


def data_overlaps(low: datetime, high: datetime) -> Plan:
    """The span of the row's version's clinical dates (earliest to latest) overlaps
    [low, high], or the version has no clinical date at all (for a deny: it takes away what it
    may cover). An unreadable period (`low` after `high`) may cover anything."""
    return ("data_overlaps", low, high) if low <= high else TRUE


def in_patients(parameter: str) -> Plan:
    """The row belongs to the record of one of the patients bound to `parameter` (a list)."""
    return ("in_patients", parameter)


def live_patients(references: str, epoch: str | None = None) -> Plan:
    """The row belongs to the record of a patient whose active Consent names one of the
    references bound to `references`, as the database indexes it. Within one snapshot that is
    exactly what the caller was resolved from; in a transaction whose later statements may see
    later commits, `epoch` pins it: it holds only while the change epochs of those references
    still sum to the value bound to `epoch` (after a change that concerns the caller it grants
    nothing until they are resolved again). It spares sending a
    list of a thousand patients with every query: the database looks the consent up per row."""
    return ("live_patients", references, epoch)


def token(key: str, values: tuple[str, ...]) -> Plan:
    """The row has a token of search parameter `key` matching one of `values` (granular scopes);
    it holds for the current version only (the search indexes are the current version's)."""
    return ("token", key, tuple(values)) if values else FALSE


# -- building ------------------------------------------------------------------------------
# Fixed aliases: built once, so building a plan creates no column collections. Each EXISTS
# names its own alias in `correlate_except`, so nesting never correlates one to another.
_COMP = Compartment.__table__.alias("acc_c")
_LABEL = ResourceLabel.__table__.alias("acc_l")
_TOKEN = IdxToken.__table__.alias("acc_t")
_CURRENT = Resource.__table__.alias("acc_r")
_CODE = VersionCode.__table__.alias("acc_vc")
_PERIOD = VersionPeriod.__table__.alias("acc_vp")
_CONSENT_PATIENT = IdxReference.__table__.alias("acc_cp")
_CONSENT_ACTOR = IdxReference.__table__.alias("acc_ca")
_CONSENT_STATUS = IdxToken.__table__.alias("acc_cs")
_EPOCH = ChangeEpoch.__table__.alias("acc_e")


def _exists(alias: Any, *conds: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(*conds).correlate_except(alias)


def _in_record(pk: Any) -> ColumnElement[bool]:
    """In some patient's record: it belongs to a patient's compartment (which includes the
    Provenances of resources in a record, through the compartment definition's inheritance),
    or it carries a data-category label: patient data whose patient cannot be told is no one's
    to see but the operator's, rather than everyone's."""
    return or_(_exists(_COMP, _COMP.c.resource_pk == pk),
               _exists(_LABEL, _LABEL.c.resource_pk == pk, _LABEL.c.system == DATA_CATEGORY))


def epoch_of(references: str) -> Any:
    """The sum of the change epochs (`tables.ChangeEpoch`) of the references bound to
    `references` (a caller's few references, each one a primary-key lookup): it grows whenever
    a watched resource naming one of them changes, and only then, so a caller's resolution
    holds while the sum over their references stands."""
    return select(cast(func.coalesce(func.sum(_EPOCH.c.value), 0), BigInteger)).where(
        in_short_list(_EPOCH.c.ref, references)).scalar_subquery()


def _per_row(alias: Any, *conds: ColumnElement[bool]) -> ColumnElement[bool]:
    """EXISTS evaluated per outer row, never turned into a set computed for all rows first:
    PostgreSQL may rewrite an EXISTS into a hashed sub-plan over every match (for the live
    lookup: every consenting patient's records, 0.7 s at 1,000 consents without statistics);
    an OFFSET keeps it correlated. SQLite evaluates it per row anyway."""
    return select(literal_column("1")).select_from(alias).where(*conds).offset(0).correlate_except(
        alias).exists()


def _live_patients(pk: Any, references: str, epoch: str | None) -> ColumnElement[bool]:
    p, a, st = _CONSENT_PATIENT, _CONSENT_ACTOR, _CONSENT_STATUS
    # Every step correlated, so that each is an index probe from the row at hand whatever the
    # planner's statistics say: the row's compartments, that patient's Consents, each one's
    # actors and status.
    consent_names_caller = _per_row(a, a.c.resource_pk == p.c.resource_pk,
                                   a.c.param == "Consent.any-actor",
                                   in_short_list(a.c.target_type + "/" + a.c.target_id,
                                                 references))
    consent_active = _per_row(st, st.c.resource_pk == p.c.resource_pk,
                             st.c.param == "Consent.status", st.c.code == "active")
    patient_consents = _per_row(p, p.c.param == "Consent.patient", p.c.target_type == "Patient",
                               p.c.target_id == _COMP.c.patient_id, consent_names_caller,
                               consent_active)
    lookup = _per_row(_COMP, _COMP.c.resource_pk == pk, patient_consents)
    if epoch is None:
        return lookup
    return and_(epoch_of(references) == bindparam(epoch, type_=BigInteger()), lookup)


def version_of(pk: Any) -> Any:
    """The `version_id` column next to a key column: which version of the resource the row
    holds (`resource.pk` -> `resource.version_id`, `resource_version.resource_pk` ->
    `resource_version.version_id`). The contract hands the policy rows of those two tables."""
    table = getattr(pk, "table", None)
    column = None if table is None else table.c.get("version_id")
    if column is None:
        raise ValueError(f"{pk!r} is not the key of a resource or resource_version row")
    return column


def _current_version(pk: Any) -> ColumnElement[bool]:
    """The row holds the resource's current version: always for a `resource` row; for a
    stored version, when it is the one `resource` holds now (a check only the current
    version's search indexes can answer is not answered for older ones)."""
    if not pk.table.is_derived_from(ResourceVersion.__table__):
        return true()
    return _exists(_CURRENT, _CURRENT.c.pk == pk, _CURRENT.c.version_id == version_of(pk))


def _of_version(alias: Any, pk: Any) -> list[ColumnElement[bool]]:
    return [alias.c.resource_pk == pk, alias.c.version_id == version_of(pk)]


def _constants(values: tuple[str, ...]) -> list[Any]:
    """A plan's fixed strings as one bound parameter each: `IN (:a, :b)` rendered once with
    the statement, where a plain list would be an expanding parameter rendered anew on every
    execution."""
    return [literal(v, String) for v in values]


def _build(plan: Plan, pk: Any, rtype: Any) -> ColumnElement[bool]:
    kind = plan[0]
    if kind == "true":
        return true()
    if kind == "false":
        return false()
    if kind == "and":
        return and_(*[_build(p, pk, rtype) for p in plan[1:]])
    if kind == "or":
        return or_(*[_build(p, pk, rtype) for p in plan[1:]])
    if kind == "not":
        return not_(_build(plan[1], pk, rtype))
    if kind == "type_in":
        return rtype.in_(_constants(plan[1]))
    if kind == "type_not_in":
        return rtype.notin_(_constants(plan[1]))
    if kind == "type_is":
        return rtype == plan[1]
    if kind == "in_record":
        return _in_record(pk)
    if kind == "live_patients":
        return _live_patients(pk, plan[1], plan[2])
    if kind == "in_patients":
        return _exists(_COMP, _COMP.c.resource_pk == pk, in_bound_list(_COMP.c.patient_id, plan[1]))
    if kind == "labels_within":
        return not_(_exists(_LABEL, _LABEL.c.resource_pk == pk, _LABEL.c.system == DATA_CATEGORY,
                            _LABEL.c.code.notin_(_constants(plan[1]))))
    if kind == "labels_any":
        return _exists(_LABEL, _LABEL.c.resource_pk == pk, _LABEL.c.system == DATA_CATEGORY,
                       _LABEL.c.code.in_(_constants(plan[1])))
    if kind == "labelled":
        return _exists(_LABEL, _LABEL.c.resource_pk == pk, or_(*[
            and_(_LABEL.c.system == literal(system, String), _LABEL.c.code == literal(code, String))
            for system, code in plan[1]]))
    if kind == "coded":
        matches = [and_(_CODE.c.code == code, _CODE.c.system == system) if system
                   else _CODE.c.code == code for system, code in plan[1]]
        return _exists(_CODE, *_of_version(_CODE, pk), or_(*matches))
    if kind == "data_within":
        dated = _exists(_PERIOD, *_of_version(_PERIOD, pk))
        outside = _exists(_PERIOD, *_of_version(_PERIOD, pk),
                          or_(_PERIOD.c.low < plan[1], _PERIOD.c.high > plan[2]))
        return and_(dated, not_(outside))
    if kind == "data_overlaps":
        # The span from the earliest to the latest date overlaps [low, high] exactly when some
        # date starts before the end and some date ends after the start.
        undated = not_(_exists(_PERIOD, *_of_version(_PERIOD, pk)))
        starts_before_end = _exists(_PERIOD, *_of_version(_PERIOD, pk), _PERIOD.c.low <= plan[2])
        ends_after_start = _exists(_PERIOD, *_of_version(_PERIOD, pk), _PERIOD.c.high >= plan[1])
        return or_(undated, and_(starts_before_end, ends_after_start))
    if kind == "token":
        # Granular scopes match any token parameter, which only the current version indexes:
        # older versions are never granted by them (failing closed).
        matches = [token_match(_TOKEN.c.system, _TOKEN.c.code, None, v) for v in plan[2]]
        return and_(_exists(_TOKEN, _TOKEN.c.resource_pk == pk, _TOKEN.c.param == plan[1],
                            or_(*matches)), _current_version(pk))
    raise ValueError(f"unknown access plan node {kind!r}")


@lru_cache(maxsize=1024)
def _cached(plan: Plan, pk: Any, rtype: Any) -> ColumnElement[bool]:
    # Keyed by the column objects themselves (identity): the store's main queries use fixed
    # aliases, so their predicates are built once per plan for the life of the process.
    clause = _build(plan, pk, rtype)
    names = (column_name(pk), column_name(rtype))
    if None in names:
        return clause
    # Everything that varies between requests is a named parameter, so the plan and the
    # columns' names say what this compiles to (`keyed_clause`).
    return KeyedClause(clause, ("access-plan", plan, names))


def predicate(plan: Plan, pk: Any, rtype: Any) -> ColumnElement[bool] | None:
    """The SQL for `plan` over a row's key and type columns; None when it restricts nothing."""
    if plan == TRUE:
        return None
    return _cached(plan, pk, rtype)
