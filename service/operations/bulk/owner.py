"""Whose an export is: only the caller who started it may poll, download or cancel it."""

from __future__ import annotations

from typing import Any

from ...access.principal import Principal, principal_from_claims


def owner_of(principal: Principal) -> str:
    """Issuer, subject and client: the same person through the same application. A token of
    another client of the same person is someone else for an export (its scopes differ)."""
    return f"{principal.issuer}|{principal.subject}|{principal.client_id or ''}"[:255]


def owner_of_claims(claims: dict[str, Any], base_url: str) -> str:
    return owner_of(principal_from_claims(claims, base_url))


def status_url(base_url: str, job_id: str) -> str:
    return f"{base_url}/_bulk/{job_id}"


def file_url(base_url: str, job_id: str, seq: int) -> str:
    return f"{base_url}/_bulk/{job_id}/{seq}.ndjson"
