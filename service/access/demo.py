"""Demo identities for `pgo-work seed-demo`: who can log in to the demo data, and one app.

Idempotent like the demo data: what exists is left alone. Only for demonstration databases;
the passwords are printed and public.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from .accounts import add_account, add_client, add_redirect_uri, find_account, find_client
from .db import transaction

DEMO_PASSWORD = "demo-password"
DEMO_ACCOUNTS = (
    ("anna", "Patient/pat-anna", "patient"),
    ("sanne", "Patient/pat-sanne", "patient"),
    ("bedrijfsarts", "Practitioner/prac-bedrijfsarts", "occupational-physician"),
    ("oncoloog", "Practitioner/prac-oncoloog", "oncologist"),
    ("arbeidsdeskundige", "Practitioner/prac-arbeidsdeskundige", "labour-expert"),
    ("verzekeringsarts", "Practitioner/prac-verzekeringsarts", "insurance-physician"),
    ("werkgever", "Practitioner/prac-hr-gemeente", "employer"),
)
DEMO_CLIENT = "pgo-demo-app"
DEMO_REDIRECT = "http://127.0.0.1:8765/callback"
WEB_CLIENT = "pgo-web"
"""The web app served at `/app` (service/web): a public client like any PGO app."""


def web_redirect(settings: Settings) -> str:
    """Where the web app receives its authorization code: `/app/callback` next to `/auth`."""
    return settings.resolved_issuer().rstrip("/") + "/app/callback"


async def seed_identities(engine: AsyncEngine, settings: Settings | None = None) -> list[str]:
    """Create the demo accounts, the demo PGO app and, given the settings, the web app at
    `/app` (its redirect URI follows the served address, so a server moved to another port
    adds that one); returns what was created."""
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
        if settings is not None:
            redirect = web_redirect(settings)
            if await find_client(conn, WEB_CLIENT) is None:
                await add_client(conn, WEB_CLIENT, name="pgo-work (web-app)", kind="public",
                                 redirect_uris=[redirect])
                created.append(f"client {WEB_CLIENT} (the web app, redirect {redirect})")
            elif await add_redirect_uri(conn, WEB_CLIENT, redirect):
                created.append(f"client {WEB_CLIENT}: redirect {redirect}")
    return created
