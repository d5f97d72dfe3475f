"""How uvicorn is set up to serve the app: the same options for `pgo-work serve` and live tests.

A request target longer than the app accepts must be answered 414 with an OperationOutcome
(`rest.guards.RequestGuard`), so the HTTP layer below must hand it through instead of failing
first: httptools cannot split a URL over 64 KB (uvicorn then sends a bare 400 and closes), and
h11 refuses a request head over 16 KB by default. `LongUrlHttpTools` keeps only the first
`URL_CEILING + 1` bytes of a longer URL (still over every allowed limit, so the app answers 414,
and the server no longer buffers a URL of any length); h11 (`--http h11`) gets room for a head of 1 MiB.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Settings

URL_CEILING = 65_000
"""The largest `max_url_bytes` the server can honour (httptools parses at most 65,535 bytes)."""
H11_MAX_HEAD_BYTES = 1024 * 1024


class LongUrlHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, with an over-long URL cut short instead of refused."""

    def on_url(self, url: bytes) -> None:
        room = URL_CEILING + 1 - len(self.url)
        if room > 0:
            self.url += url[:room]


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` beyond host, port and app."""
    del settings  # the limits themselves are the app's; these only let the app see them
    # The guarded protocol (a LongUrlHttpTools) also bounds request head and body time and the
    # connections per worker (`service.rest.connection_guard`).
    from .rest.connection_guard import GuardedHttpProtocol

    # uvloop, said outright rather than left to uvicorn's "auto" (which silently falls back to
    # asyncio's loop when uvloop is missing): the event loop is on every request's path.
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return {"http": GuardedHttpProtocol, "loop": loop,
            "h11_max_incomplete_event_size": H11_MAX_HEAD_BYTES}
