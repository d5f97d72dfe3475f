"""Checks on the raw request, before any route (the URL's length and the NUL character), and
the cancellation of a request whose client has gone.

They are ASGI middleware, not dependencies, because they hold for every endpoint (FHIR, `/auth`,
operations, unknown paths alike) and must answer before anything parses or stores the URL:

- a request target (path and query) over `max_url_bytes` is 414 with an OperationOutcome. The
  HTTP servers give up much later and worse (httptools refuses a URL over 64 KB with a bare 400
  and drops the connection, h11 anything over 16 KB of head), so `service.http_server` sets them
  up to hand such URLs through, shortened, and this answers them;
- U+0000 anywhere in the decoded path or query is 400: PostgreSQL text cannot hold it (every
  query naming it failed with a 500), and SQLite would compare a truncated value. Searches inside
  Bundles and headers (If-None-Exist) are checked where they are parsed (`SearchParser`), JSON
  bodies where they are read (`negotiation.read_body`).
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..fhir.outcome import FhirError
from ..store.search.parser import reject_nul
from .negotiation import fhir_response


class RequestGuard:
    """414 for a too long request target, 400 for NUL in it; everything else passes through."""

    def __init__(self, app: ASGIApp, max_url_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = self.check(scope)
        if error is None:
            await self.app(scope, receive, send)
            return
        await fhir_response(None, error.status, error.outcome, headers=error.headers)(
            scope, receive, send)

    def check(self, scope: Scope) -> FhirError | None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        length = len(raw_path) + (len(query) + 1 if query else 0)
        if length > self.max_url_bytes:
            return FhirError(414, "too-long", f"The request URL exceeds {self.max_url_bytes} "
                             "bytes; send a long search as POST [type]/_search with the "
                             "parameters in the body", headers={"Connection": "close"})
        if "\x00" in scope["path"]:
            return FhirError(400, "value", "The URL path contains the NUL character (%00), which "
                             "no FHIR value may hold")
        if b"%00" in query or b"\x00" in query:
            try:
                reject_nul(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True))
            except FhirError as exc:
                return exc
        return None



class CancelOnDisconnect:
    """Stop a request's work when its client goes away before the answer is complete.

    uvicorn only tells the app through `receive()`, which nothing calls during a search, so a
    runaway query went on for minutes after the client left. Once the request body has been
    read (at once when there is none; never buffered ahead of the app), a listener waits for
    `http.disconnect` and cancels the request's task: the database call in flight is cancelled
    with it (asyncpg sends PostgreSQL a cancel request), the transaction rolls back, and nobody
    is answered. The statement time limit (`statement_timeout_ms`) bounds what this misses.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        state = {"finished": False, "gone": False}
        listener: asyncio.Task[None] | None = None

        async def listen() -> None:
            while True:
                message = await receive()
                inbox.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if not state["finished"]:
                        state["gone"] = True
                        task.cancel()
                    return

        def start_listening() -> None:
            nonlocal listener
            if listener is None:
                listener = asyncio.ensure_future(listen())

        async def app_receive() -> Message:
            if listener is not None:
                return await inbox.get()
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                start_listening()
            return message

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                state["finished"] = True
            await send(message)

        if not _has_body(scope):
            start_listening()
        try:
            await self.app(scope, app_receive, app_send)
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()  # the client left: end quietly, there is no one to answer
        finally:
            state["finished"] = True
            if listener is not None:
                listener.cancel()


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False
