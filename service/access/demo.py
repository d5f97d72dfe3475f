"""Demo identities for `pgo-work seed-demo`: who can log in to the demo data, and one app.

Idempotent like the demo data: what exists is left alone. Only for demonstration databases;
the passwords are printed and public.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from .accounts import add_account, add_client, find_account, find_client
from .db import transaction

DEMO_PASSWORD = "demo-password"
DEMO_ACCOUNTS = (
    ("anna", "Patient/pat-anna", "patient"),
    ("bedrijfsarts", "Practitioner/prac-bedrijfsarts", "occupational-physician"),
    ("oncoloog", "Practitioner/prac-oncoloog", "oncologist"),
    ("arbeidsdeskundige", "Practitioner/prac-arbeidsdeskundige", "labour-expert"),
    ("verzekeringsarts", "Practitioner/prac-verzekeringsarts", "insurance-physician"),
    ("werkgever", "Practitioner/prac-hr-gemeente", "employer"),
)
DEMO_CLIENT = "pgo-demo-app"
DEMO_REDIRECT = "http://127.0.0.1:8765/callback"


async def seed_identities(engine: AsyncEngine) -> list[str]:
    """Create the demo accounts and the demo PGO app; returns what was created."""
    created: list[str] = []
    async with transaction(engine, write=True) as conn:
        for username, fhir_user, role in DEMO_ACCOUNTS:
            if await find_account(conn, username) is None:
                await add_account(conn, username, DEMO_PASSWORD, fhir_user, role)
                created.append(f"account {username} ({fhir_user}, {role})")
        if await find_client(conn, DEMO_CLIENT) is None:
            await add_client(conn, DEMO_CLIENT, name="pgo-work demo PGO", kind="public",
                             redirect_uris=[DEMO_REDIRECT])
            created.append(f"client {DEMO_CLIENT} (redirect {DEMO_REDIRECT})")
    return created
