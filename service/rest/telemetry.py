"""Every request, timed and named: Prometheus metrics and the access log line.

Outermost ASGI middleware, so what it measures is what the client waited for: CORS refusals,
414s and the 503 of an unreachable database included. Pure ASGI (no BaseHTTPMiddleware): it only
watches the response start and adds no task or buffering.

The request is named by `telemetry.classify` from its method and path (bounded labels, no ids,
no query string); a handler that knows better (a `batch` Bundle arrives at the same URL as a
`transaction`) says so in the request state (`telemetry_interaction`). The request's correlation
id is put in a context variable for the duration, so every log line written while serving it
carries it (`telemetry.logs`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..telemetry import http_metrics
from ..telemetry.classify import Interaction, classify
from ..telemetry.logs import ACCESS_LOGGER, request_id
from .middleware import request_ids

access_log = logging.getLogger(ACCESS_LOGGER)
CLIENT_CLOSED = 499
"""Recorded for a request whose client went away before it was answered (nginx's code)."""
INTERACTION_STATE = "telemetry_interaction"


def _operation_names(scope: Scope) -> frozenset[str]:
    app = scope.get("app")
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    operations = getattr(runtime, "operations", None)
    return operations.names() if operations is not None else frozenset()


def _printable(path: str) -> str:
    """The path as one log-safe line: control characters escaped (a decoded %0A must not
    forge a second line in a text log)."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in path)


class RequestTelemetry:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        ids = request_ids(scope)
        token = request_id.set(next(iter(ids.values()), None))
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            status = status or CLIENT_CLOSED
            raise
        except Exception:
            status = status or 500
            raise
        finally:
            seconds = time.perf_counter() - started
            what = classify(scope["method"], scope["path"], _operation_names(scope))
            refined = state.get(INTERACTION_STATE)
            if isinstance(refined, str):
                what = replace(what, interaction=refined)
            http_metrics.observe(what, status or CLIENT_CLOSED, seconds)
            if access_log.isEnabledFor(logging.INFO):
                self._log(scope, what, status or CLIENT_CLOSED, seconds)
            request_id.reset(token)

    @staticmethod
    def _log(scope: Scope, what: Interaction, status: int, seconds: float) -> None:
        route = _printable(scope["path"])
        client = scope.get("client")
        host = client[0] if client else "-"
        millis = round(seconds * 1000, 1)
        access_log.info('%s - "%s %s" %d %.1fms', host, scope["method"], route, status, millis,
                        extra={"method": scope["method"], "route": route, "status": status,
                               "duration_ms": millis, "interaction": what.interaction,
                               "resource_type": what.resource_type or None,
                               "operation": what.operation or None, "client": host})
