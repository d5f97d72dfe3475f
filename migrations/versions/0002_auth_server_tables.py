"""auth server tables: signing keys, accounts, clients, grants, codes, refresh tokens,
revoked access tokens and used client assertions (service/access/models.py)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:28:30.055989
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_account",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("fhir_user", sa.String(length=160), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_auth_account")),
        sa.UniqueConstraint("subject", name=op.f("uq_auth_account_subject")),
        sa.UniqueConstraint("username", name=op.f("uq_auth_account_username")),
    )
    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=True),
        sa.Column("fhir_user", sa.String(length=160), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_auth_client")),
    )
    op.create_table(
        "auth_revoked_token",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_auth_revoked_token")),
    )
    with op.batch_alter_table("auth_revoked_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_revoked_token_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "auth_signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=8), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_auth_signing_key")),
    )
    op.create_table(
        "auth_used_assertion",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_auth_used_assertion")),
    )
    with op.batch_alter_table("auth_used_assertion", schema=None) as batch_op:
        batch_op.create_index("ix_auth_used_assertion_expires", ["expires_at"], unique=False)

    op.create_table(
        "auth_grant",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("account_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_pk"],
            ["auth_account.pk"],
            name=op.f("fk_auth_grant_account_pk_auth_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["auth_client.client_id"],
            name=op.f("fk_auth_grant_client_id_auth_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_grant")),
    )
    with op.batch_alter_table("auth_grant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_grant_account_pk"), ["account_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_grant_client_id"), ["client_id"], unique=False)

    op.create_table(
        "auth_code",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1024), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("nonce", sa.String(length=255), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["auth_grant.id"], name=op.f("fk_auth_code_grant_id_auth_grant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_auth_code")),
    )
    with op.batch_alter_table("auth_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_code_grant_id"), ["grant_id"], unique=False)

    op.create_table(
        "auth_refresh_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["auth_grant.id"],
            name=op.f("fk_auth_refresh_token_grant_id_auth_grant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_auth_refresh_token")),
    )
    with op.batch_alter_table("auth_refresh_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_refresh_token_grant_id"), ["grant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_refresh_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_refresh_token_grant_id"))

    op.drop_table("auth_refresh_token")
    with op.batch_alter_table("auth_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_code_grant_id"))

    op.drop_table("auth_code")
    with op.batch_alter_table("auth_grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_grant_client_id"))
        batch_op.drop_index(batch_op.f("ix_auth_grant_account_pk"))

    op.drop_table("auth_grant")
    with op.batch_alter_table("auth_used_assertion", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_used_assertion_expires")

    op.drop_table("auth_used_assertion")
    op.drop_table("auth_signing_key")
    with op.batch_alter_table("auth_revoked_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_revoked_token_expires_at"))

    op.drop_table("auth_revoked_token")
    op.drop_table("auth_client")
    op.drop_table("auth_account")
