"""The schema, as typed SQLAlchemy 2.0 models. Alembic migrations are generated to match it.

Layout, and why:
- `resource` holds the current version of every resource (content as JSON text with its meta
  already filled in, so a read returns it without re-serialising);
- `resource_version` holds every version, for vread and history, with a global ordering key;
- `compartment` and `resource_label` say which patient a resource belongs to and which
  security labels it carries. They are indexed columns, not JSON, so that access predicates
  compile into the same SQL as the search; they survive deletion so history stays guarded;
- `idx_*` are typed search index rows for the current, non-deleted version, one table per
  search parameter type, written at write time from SearchParameter expressions;
- `version_code` and `version_period` are what consent judges about a resource's content
  (its codes, its clinical dates), per stored version and kept on delete, so every version,
  current or old, is judged by what it itself says (`docs/access.md`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Integer on SQLite so the primary key is the rowid alias and autoincrements.
PK = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Resource(Base):
    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("resource_type", "id"),
        Index("ix_resource_type_updated", "resource_type", "last_updated"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[str | None] = mapped_column(Text)


class ResourceVersion(Base):
    __tablename__ = "resource_version"
    __table_args__ = (
        UniqueConstraint("resource_pk", "version_id"),
        Index("ix_resource_version_updated", "last_updated"),
        Index("ix_resource_version_type_updated", "resource_type", "last_updated"),
        Index("ix_resource_version_identity", "resource_type", "id", "version_id"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(8))
    content: Mapped[str | None] = mapped_column(Text)


class Compartment(Base):
    """Patient compartment membership (CompartmentDefinition/patient), one row per patient."""

    __tablename__ = "compartment"
    __table_args__ = (Index("ix_compartment_patient", "patient_id", "resource_pk"),)

    resource_pk: Mapped[int] = mapped_column(
        ForeignKey("resource.pk", ondelete="CASCADE"), primary_key=True
    )
    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class ResourceLabel(Base):
    """meta.security labels; only ever added to, so a writer cannot lower protection."""

    __tablename__ = "resource_label"
    __table_args__ = (Index("ix_resource_label_code", "code", "system", "resource_pk"),)

    resource_pk: Mapped[int] = mapped_column(
        ForeignKey("resource.pk", ondelete="CASCADE"), primary_key=True
    )
    system: Mapped[str] = mapped_column(String(255), primary_key=True)
    code: Mapped[str] = mapped_column(String(128), primary_key=True)


def _fk() -> Mapped[int]:
    return mapped_column(ForeignKey("resource.pk", ondelete="CASCADE"), index=True)


class IdxToken(Base):
    __tablename__ = "idx_token"
    __table_args__ = (Index("ix_idx_token_lookup", "param", "code", "system", "resource_pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    system: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str | None] = mapped_column(String(512))


class IdxString(Base):
    __tablename__ = "idx_string"
    __table_args__ = (Index("ix_idx_string_lookup", "param", "value_norm", "resource_pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    value_norm: Mapped[str] = mapped_column(String(512))
    value_exact: Mapped[str] = mapped_column(Text)


class IdxDate(Base):
    __tablename__ = "idx_date"
    __table_args__ = (Index("ix_idx_date_lookup", "param", "low", "high", "resource_pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    low: Mapped[datetime] = mapped_column(DateTime)
    high: Mapped[datetime] = mapped_column(DateTime)


class IdxNumber(Base):
    __tablename__ = "idx_number"
    __table_args__ = (Index("ix_idx_number_lookup", "param", "value", "resource_pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)


class IdxQuantity(Base):
    __tablename__ = "idx_quantity"
    __table_args__ = (
        Index("ix_idx_quantity_lookup", "param", "code", "value", "resource_pk"),
        Index("ix_idx_quantity_canonical", "param", "canonical_unit", "canonical_value",
              "resource_pk"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    system: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(128))
    canonical_value: Mapped[float | None] = mapped_column(Float)
    canonical_unit: Mapped[str | None] = mapped_column(String(128))


class IdxReference(Base):
    __tablename__ = "idx_reference"
    __table_args__ = (
        Index("ix_idx_reference_lookup", "param", "target_id", "target_type", "resource_pk"),
        Index("ix_idx_reference_target", "target_type", "target_id"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(1024))
    identifier_system: Mapped[str | None] = mapped_column(String(255))
    identifier_value: Mapped[str | None] = mapped_column(String(255))


class IdxUri(Base):
    __tablename__ = "idx_uri"
    __table_args__ = (Index("ix_idx_uri_lookup", "param", "value", "resource_pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = _fk()
    param: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(String(1024))


class ChangeEpoch(Base):
    """A counter per reference (`Practitioner/123`), bumped in the same transaction as every
    write of a watched resource that names it (`StoreConfig.watched`): a Consent names its
    actors, a PractitionerRole its practitioner and organisation, a CareTeam its participants,
    and every watched resource names itself. What is derived from those resources for someone
    (the access layer's caller resolution) stays valid exactly as long as the counters of that
    someone's references have not moved; the bump commits with the change, so every instance
    sees it at once, and a change that names other people invalidates nothing of theirs."""

    __tablename__ = "change_epoch"

    ref: Mapped[str] = mapped_column(String(130), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class VersionCode(Base):
    """The codes (`<Type>.code` tokens) of one stored version, for a provision's `code`.

    Keyed by (resource, version) rather than by the version row, so that a write knows the key
    before the version row is inserted, and a current row finds its own by its `version_id`.
    A deletion carries the facts of the version it deleted."""

    __tablename__ = "version_code"
    __table_args__ = (Index("ix_version_code_lookup", "resource_pk", "version_id", "code",
                            "system"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(Integer)
    system: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(255))


class VersionPeriod(Base):
    """The clinical dates (`<Type>.clinical-date`) of one stored version, as ranges, for a
    provision's `dataPeriod`; keyed as `VersionCode`."""

    __tablename__ = "version_period"
    __table_args__ = (Index("ix_version_period_lookup", "resource_pk", "version_id", "low",
                            "high"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(Integer)
    low: Mapped[datetime] = mapped_column(DateTime)
    high: Mapped[datetime] = mapped_column(DateTime)


INDEX_TABLES = {
    "token": IdxToken.__table__,
    "string": IdxString.__table__,
    "date": IdxDate.__table__,
    "number": IdxNumber.__table__,
    "quantity": IdxQuantity.__table__,
    "reference": IdxReference.__table__,
    "uri": IdxUri.__table__,
}


class SubscriptionRow(Base):
    """A topic-based Subscription (R4 Subscriptions Backport IG) and its delivery state.

    Not a row of `resource`: a Subscription belongs to the caller that created it and is served
    to them (and the operator) only, never through the generic search, history or include
    paths that judge rows by patient consent. `owner` is the caller's verified claims (never
    the token), from which the caller's access is rebuilt at every event and every delivery.
    Delivery state lives here so that a claim is one row lock and a lease (`lease_until`)."""

    __tablename__ = "subscription"
    __table_args__ = (Index("ix_subscription_topic_status", "topic", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_key: Mapped[str] = mapped_column(String(512), index=True)
    owner: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    events_count: Mapped[int] = mapped_column(BigInteger)
    """The number of the last event written for it: numbers run 1, 2, ... without gaps."""
    delivered_through: Mapped[int] = mapped_column(BigInteger)
    """The number of the last event the endpoint acknowledged (2xx)."""
    attempts: Mapped[int] = mapped_column(Integer)
    """Failed deliveries in a row; reset by a success."""
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)


class SubscriptionEvent(Base):
    """The outbox: one row per event, written in the transaction of the change that caused it,
    already judged by the owner's access at that moment (a row exists only if the owner could
    see the focus then). Deleted with its Subscription."""

    __tablename__ = "subscription_event"
    __table_args__ = (UniqueConstraint("subscription_id", "event_number"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscription.id", ondelete="CASCADE"))
    event_number: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    interaction: Mapped[str] = mapped_column(String(16))
    focus_type: Mapped[str] = mapped_column(String(64))
    focus_id: Mapped[str] = mapped_column(String(64))
    focus_version: Mapped[int] = mapped_column(Integer)


class ExportJob(Base):
    """A Bulk Data export (`$export`): who asked (the verified claims, to rebuild their access
    for every chunk; never the token), what they asked for, and how far the worker got. The
    row is the job's only state, so any instance may run its next chunk and a killed one loses
    at most the chunk it was writing (rolled back with its cursor). The row outlives its files
    (cancel, expiry) as the record of who exported what for whom (`patients`)."""

    __tablename__ = "export_job"
    __table_args__ = (Index("ix_export_job_status", "status", "updated_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    """Who may poll, download and cancel: the requester's issuer, subject and client."""
    claims: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text)
    request_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    """accepted | running | completed | failed | cancelled | expired"""
    cursor: Mapped[str | None] = mapped_column(Text)
    exported: Mapped[int] = mapped_column(Integer, default=0)
    patients: Mapped[str | None] = mapped_column(Text)
    """JSON list of the patients whose records the files hold (for the audit summary)."""
    error: Mapped[str | None] = mapped_column(Text)
    transaction_time: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class ExportFile(Base):
    """One NDJSON output file of an export job, in the database so any instance serves it.
    `refs` lists (pk, id) per line, for the download's consent re-check and its audit."""

    __tablename__ = "export_file"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("export_job.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    resource_type: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    refs: Mapped[str] = mapped_column(Text)
