"""Tables of the built-in authorization server, on the store's one `Base` (one metadata, one
Alembic history).

Everything that must outlive a request lives here, not in process memory: instances behind a
load balancer share signing keys, codes and refresh tokens through the database. Codes and
refresh tokens are stored as SHA-256 hashes, so a copy of the database does not hold usable
credentials; they are 256-bit random values, so a fast hash is enough.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..store.tables import PK, Base


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, typed as one (for insert/update/delete statements)."""
    return cast(Table, model.__table__)


class SigningKey(Base):
    """A private JWK the server signs tokens with. The newest unretired key signs; every
    unretired key verifies, so a rotated-out key keeps working until it is retired."""

    __tablename__ = "auth_signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    private_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)


class Account(Base):
    """A person who logs in at the built-in server: a patient, a professional, a representative."""

    __tablename__ = "auth_account"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True)
    """The stable `sub` of this account's tokens (a UUID, never reused)."""
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    fhir_user: Mapped[str] = mapped_column(String(160))
    role: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class Client(Base):
    """A registered application: a public PGO/SMART app (redirect URIs, PKCE) or a backend
    client (its public JWKS, for private_key_jwt client authentication)."""

    __tablename__ = "auth_client"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    """`public` (authorization code + PKCE) or `backend` (private_key_jwt)."""
    redirect_uris: Mapped[str] = mapped_column(Text)
    """JSON array of exact redirect URIs."""
    jwks: Mapped[str | None] = mapped_column(Text)
    """JSON Web Key Set with the client's public keys (backend clients)."""
    scope: Mapped[str] = mapped_column(Text)
    """The most this client may be granted; requests are narrowed to it. Empty: no limit."""
    role: Mapped[str | None] = mapped_column(String(64))
    """The `role` claim of client_credentials tokens (e.g. ehr-system)."""
    fhir_user: Mapped[str | None] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class Grant(Base):
    """One authorization a user gave one app at the login page. Its refresh tokens rotate
    within it; revoking it (or reusing an old refresh token) ends them all, and every access
    token issued under it (they carry its id as `sid`)."""

    __tablename__ = "auth_grant"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("auth_client.client_id", ondelete="CASCADE"),
                                           index=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("auth_account.pk", ondelete="CASCADE"),
                                            index=True)
    scope: Mapped[str] = mapped_column(Text)
    patient: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuthCode(Base):
    """An authorization code: single use, short-lived, bound to its redirect URI and PKCE
    challenge."""

    __tablename__ = "auth_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("auth_grant.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(1024))
    code_challenge: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class RefreshToken(Base):
    """One refresh token of a grant; `used_at` is set when it is exchanged (rotation)."""

    __tablename__ = "auth_refresh_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("auth_grant.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class RevokedToken(Base):
    """Access tokens revoked one by one (RFC 7009), kept until they would have expired."""

    __tablename__ = "auth_revoked_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class UsedAssertion(Base):
    """`jti`s of client assertions already accepted: each may be used once (replay guard)."""

    __tablename__ = "auth_used_assertion"
    __table_args__ = (Index("ix_auth_used_assertion_expires", "expires_at"),)

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
