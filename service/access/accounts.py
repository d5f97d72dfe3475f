"""Accounts (people who log in) and clients (registered applications) of the built-in server.

Passwords are hashed with Argon2id (memory-hard, argon2-cffi's RFC 9106 defaults); a login for
an unknown user still runs one verification, so response time does not tell which usernames
exist.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import false, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..fhir import dates
from ..store.tables import Resource
from .models import Account, Client, table_of
from .principal import FHIR_USER_RE, known_roles
from .scopes import parse_scopes

RESOURCES = Resource.__table__

ACCOUNTS = table_of(Account)
CLIENTS = table_of(Client)
CLIENT_KINDS = ("public", "backend")

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class RegistrationError(ValueError):
    """An account or client that cannot be registered as asked (message says why)."""


@dataclass(frozen=True)
class AccountRow:
    pk: int
    subject: str
    username: str
    fhir_user: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    kind: str
    redirect_uris: tuple[str, ...]
    jwks: dict[str, Any] | None
    scope: str
    role: str | None
    fhir_user: str | None
    disabled: bool


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def _account(row: Any) -> AccountRow:
    return AccountRow(row.pk, row.subject, row.username, row.fhir_user, row.role, bool(row.disabled))


def _client(row: Any) -> ClientRow:
    return ClientRow(row.client_id, row.name, row.kind, tuple(json.loads(row.redirect_uris or "[]")),
                     json.loads(row.jwks) if row.jwks else None, row.scope or "", row.role,
                     row.fhir_user, bool(row.disabled))


def check_fhir_user(value: str) -> str:
    if not FHIR_USER_RE.match(value):
        raise RegistrationError(f"fhirUser must be Patient/, Practitioner/, PractitionerRole/ or "
                                f"RelatedPerson/ followed by an id, not {value!r}")
    return value


def check_role(value: str) -> str:
    if value not in known_roles():
        raise RegistrationError(f"role must be one of {', '.join(known_roles())}, not {value!r}")
    return value


async def add_account(conn: AsyncConnection, username: str, password: str, fhir_user: str,
                      role: str) -> AccountRow:
    if not username or len(username) > 128:
        raise RegistrationError("username must be 1 to 128 characters")
    if len(password) < 8:
        raise RegistrationError("password must be at least 8 characters")
    check_fhir_user(fhir_user)
    check_role(role)
    if role == "patient" and not fhir_user.startswith("Patient/"):
        raise RegistrationError("a patient account's fhirUser must be a Patient")
    subject = str(uuid.uuid4())
    try:
        await conn.execute(ACCOUNTS.insert(), {
            "subject": subject, "username": username, "password_hash": _hasher.hash(password),
            "fhir_user": fhir_user, "role": role, "created_at": dates.utcnow(), "disabled": False})
    except IntegrityError as exc:
        raise RegistrationError(f"an account named {username!r} already exists") from exc
    found = await find_account(conn, username)
    assert found is not None
    return found


async def find_account(conn: AsyncConnection, username: str) -> AccountRow | None:
    row = (await conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.username == username))).first()
    return _account(row) if row else None


async def account_by_pk(conn: AsyncConnection, pk: int) -> AccountRow | None:
    row = (await conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.pk == pk))).first()
    return _account(row) if row else None


async def authenticate(conn: AsyncConnection, username: str, password: str) -> AccountRow | None:
    """The enabled account whose password this is; None otherwise (same cost either way)."""
    row = (await conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.username == username))).first()
    # Argon2 is deliberately slow and memory-hard: off the event loop, so logins do not stall
    # every other request of this worker.
    if not await asyncio.to_thread(_verify, row.password_hash if row else _DUMMY_HASH, password):
        return None
    if row is None or row.disabled:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        await conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.pk == row.pk)
                           .values(password_hash=_hasher.hash(password)))
    return _account(row)


def _check_jwks(jwks: dict[str, Any]) -> None:
    try:
        keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise RegistrationError(f"the JWKS cannot be read: {exc}") from exc
    keys = list(keyset)
    if not keys:
        raise RegistrationError("the JWKS holds no keys")
    for key in keys:
        if key.is_private:
            raise RegistrationError("register public keys only; the JWKS holds a private key")
        if not key.kid:
            raise RegistrationError("every key in the JWKS needs a kid")


async def add_client(conn: AsyncConnection, client_id: str, *, name: str = "", kind: str = "public",
                     redirect_uris: list[str] | None = None, jwks: dict[str, Any] | None = None,
                     scope: str = "", role: str | None = None,
                     fhir_user: str | None = None) -> ClientRow:
    """Register a client: public apps need redirect URIs, backend clients a JWKS."""
    if not client_id or len(client_id) > 128:
        raise RegistrationError("client_id must be 1 to 128 characters")
    if kind not in CLIENT_KINDS:
        raise RegistrationError(f"kind must be one of {', '.join(CLIENT_KINDS)}")
    uris = list(redirect_uris or [])
    if kind == "public" and not uris:
        raise RegistrationError("a public client needs at least one redirect URI")
    for uri in uris:
        if "#" in uri or "://" not in uri:
            raise RegistrationError(f"redirect URI {uri!r} must be absolute and without a fragment")
    if kind == "backend":
        if jwks is None:
            raise RegistrationError("a backend client needs its JWKS (public keys)")
        _check_jwks(jwks)
    unknown = parse_scopes(scope).unknown
    if unknown:
        raise RegistrationError(f"unknown scopes: {' '.join(unknown)}")
    if role is not None:
        check_role(role)
    if fhir_user is not None:
        check_fhir_user(fhir_user)
    try:
        await conn.execute(CLIENTS.insert(), {
            "client_id": client_id, "name": name or client_id, "kind": kind,
            "redirect_uris": json.dumps(uris), "jwks": json.dumps(jwks) if jwks else None,
            "scope": scope, "role": role, "fhir_user": fhir_user, "created_at": dates.utcnow(),
            "disabled": False})
    except IntegrityError as exc:
        raise RegistrationError(f"a client {client_id!r} already exists") from exc
    found = await find_client(conn, client_id)
    assert found is not None
    return found


async def add_redirect_uri(conn: AsyncConnection, client_id: str, uri: str) -> bool:
    """Register one more redirect URI for a public client; False when it was there already."""
    client = await find_client(conn, client_id)
    if client is None:
        raise RegistrationError(f"no client {client_id!r}")
    if uri in client.redirect_uris:
        return False
    if "#" in uri or "://" not in uri:
        raise RegistrationError(f"redirect URI {uri!r} must be absolute and without a fragment")
    await conn.execute(CLIENTS.update().where(CLIENTS.c.client_id == client_id).values(
        redirect_uris=json.dumps([*client.redirect_uris, uri])))
    return True


async def find_client(conn: AsyncConnection, client_id: str) -> ClientRow | None:
    row = (await conn.execute(select(CLIENTS).where(CLIENTS.c.client_id == client_id))).first()
    return _client(row) if row else None


async def related_patient(conn: AsyncConnection, related_person_id: str) -> str | None:
    """The Patient a stored RelatedPerson belongs to (`RelatedPerson.patient`), if any."""
    row = (await conn.execute(select(RESOURCES.c.content).where(
        RESOURCES.c.resource_type == "RelatedPerson", RESOURCES.c.id == related_person_id,
        RESOURCES.c.deleted == false()))).first()
    if row is None or not row.content:
        return None
    reference = (orjson.loads(row.content).get("patient") or {}).get("reference", "")
    parts = reference.split("/") if isinstance(reference, str) else []
    return parts[1] if len(parts) == 2 and parts[0] == "Patient" and parts[1] else None


async def list_accounts(conn: AsyncConnection) -> list[AccountRow]:
    rows = await conn.execute(select(ACCOUNTS).order_by(ACCOUNTS.c.username))
    return [_account(row) for row in rows]


async def list_clients(conn: AsyncConnection) -> list[ClientRow]:
    rows = await conn.execute(select(CLIENTS).order_by(CLIENTS.c.client_id))
    return [_client(row) for row in rows]


async def set_password(conn: AsyncConnection, username: str, password: str) -> None:
    """A new password for an account; the same rule as at registration. Grants already given
    stay valid (revoke them separately if the old password leaked)."""
    if len(password) < 8:
        raise RegistrationError("password must be at least 8 characters")
    done = await conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.username == username)
                              .values(password_hash=_hasher.hash(password)))
    if not done.rowcount:
        raise RegistrationError(f"there is no account named {username!r}")
