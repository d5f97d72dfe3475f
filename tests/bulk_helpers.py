"""Driving a Bulk Data export over HTTP the way a client does (kick-off, poll, download), and
the worker the way a server process does (`chunks.run_once` on a runtime of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi.testclient import TestClient

from service.config import Settings
from service.operations.bulk import chunks
from service.runtime import Runtime, build_runtime

T = TypeVar("T")
KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def local(url: str) -> str:
    return url.removeprefix("http://testserver")


def kick_off(client: TestClient, path: str, headers: dict[str, str] | None = None,
             **params: Any) -> str:
    """The status URL (path) of a new export; asserts the 202."""
    resp = client.get(f"/fhir/{path}", params=params, headers={**KICK_OFF, **(headers or {})})
    assert resp.status_code == 202, resp.text
    return local(resp.headers["Content-Location"])


def with_runtime(settings: Settings, fn: Callable[[Runtime], Awaitable[T]], **overrides: Any) -> T:
    """Run `fn` on a runtime of its own, as another server process would (then gone)."""
    async def run() -> T:
        rt = build_runtime(settings.model_copy(update=overrides))
        try:
            return await fn(rt)
        finally:
            await rt.close()

    return asyncio.run(run())


def drain(settings: Settings, **overrides: Any) -> int:
    """Run the export task until nothing is due; the units of work done."""
    async def run(rt: Runtime) -> int:
        total = 0
        while done := await chunks.run_once(rt):
            total += done
        return total

    return with_runtime(settings, run, **overrides)


def manifest(client: TestClient, status: str, headers: dict[str, str] | None = None) -> Any:
    resp = client.get(status, headers=headers or {})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


def download(client: TestClient, url: str, headers: dict[str, str] | None = None) -> list[Any]:
    resp = client.get(local(url), headers={"Accept": "application/fhir+ndjson", **(headers or {})})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+ndjson")
    return [orjson.loads(line) for line in resp.text.splitlines() if line]


def lines_by_type(client: TestClient, body: Any,
                  headers: dict[str, str] | None = None) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in body["output"]:
        lines = download(client, item["url"], headers)
        assert len(lines) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in lines)
        out.setdefault(item["type"], []).extend(lines)
    return out


def count(client: TestClient, path: str, headers: dict[str, str] | None = None,
          **params: str) -> int:
    resp = client.get(f"/fhir/{path}", params={**params, "_summary": "count"}, headers=headers or {})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])
