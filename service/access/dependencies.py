"""The per-request access policy, as a named FastAPI dependency.

Until identity and consent land (the access issue), every request is served with
unrestricted access; the REST layer already asks for the policy per request, so tightening
it changes this module and nothing else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..store.access import AccessPolicy, SystemAccess


async def get_access(request: Request) -> AccessPolicy:
    return SystemAccess()


AccessDep = Annotated[AccessPolicy, Depends(get_access)]
