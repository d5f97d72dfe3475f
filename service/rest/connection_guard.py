"""Bounds on what one HTTP client can hold: request-head time, request-body time, connections.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but has no timeout while a
request is being received: a client sending one header byte per second keeps its connection,
and with it a file descriptor, for ever; enough of them exhaust the process's file limit and
new clients fail (issue 14). This protocol is uvicorn's own (httptools) with a watchdog that
does not depend on the application:

- a request head (request line and headers) must be complete within `header_timeout` of the
  connection being made, or of the first byte of the next request on a kept-alive connection;
- a request body must be complete within `body_timeout` of its head;
- a worker keeps at most `max_connections` connections (and always fewer than its file limit);
  a connection beyond that gets 503 and is closed at once.

A client past a deadline gets `408 Request Timeout` (when no response was started) and the
connection is closed. In production a reverse proxy in front bounds this too (README,
"Production"); this guard is for when it does not.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from ..config import get_settings
from ..http_server import LongUrlHttpTools

log = logging.getLogger("pgo_work.http")

_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 24\r\nconnection: close\r\n\r\nRequest not sent in time")
_FULL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
         b"retry-after: 5\r\ncontent-length: 26\r\nconnection: close\r\n\r\n"
         b"Too many open connections.")
_FD_RESERVE = 64
"""File descriptors kept free for the database pool, logs and files."""


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls) -> Limits:
        s = get_settings()
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = s.max_connections
        if soft != resource.RLIM_INFINITY:
            cap = max(1, min(cap, soft - _FD_RESERVE))
        return cls(s.header_timeout_seconds, s.body_timeout_seconds, cap)


class _Throttled:
    """At most one warning per interval, with how many events it stands for."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval, self.count, self.last = interval, 0, 0.0

    def warn(self, message: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.interval:
            log.warning("%s (%d since the last such warning)", message, self.count)
            self.count, self.last = 0, now


_refused = _Throttled()
_timed_out = _Throttled()


class GuardedHttpProtocol(LongUrlHttpTools):
    """uvicorn's httptools protocol (over-long URLs cut short, `service.http_server`) with head
    and body deadlines and a connection cap.

    It only watches uvicorn's per-connection state (`cycle`: the request being answered) around
    `data_received`; parsing and the ASGI cycle are uvicorn's.
    """

    limits: Limits | None = None
    """Set for tests or embedding; None reads the `PGO_WORK_` settings (every worker process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = type(self).limits or Limits.from_settings()
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting_head = False
        self._seen_cycle: object | None = None

    # -- the connection ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            _refused.warn(f"refused a connection: {self._limits.max_connections} are open")
            transport.write(_FULL)
            transport.close()
            return
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._awaiting_head and self._idle():
            self._expect_head()  # the first bytes of the next request on this connection
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:
            # The parser completed a request head and started answering it.
            self._seen_cycle = cycle
            self._awaiting_head = False
            self._disarm()
            if cycle.more_body:
                self._arm(self._limits.body_timeout, self._body_late)
        elif cycle is not None and not cycle.more_body and not self._awaiting_head:
            self._disarm()  # the body is complete

    # -- deadlines --------------------------------------------------------------------
    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _expect_head(self) -> None:
        self._awaiting_head = True
        self._arm(self._limits.header_timeout, self._head_late)

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._deadline = None
        if self._awaiting_head and self._idle() and not self.transport.is_closing():
            _timed_out.warn(f"closed a connection whose request head took over "
                            f"{self._limits.header_timeout:g} s")
            self.transport.write(_TIMEOUT)
            self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        if cycle.response_started and not cycle.response_complete:
            return  # a response is being written; let it finish
        _timed_out.warn(f"closed a connection whose request body took over "
                        f"{self._limits.body_timeout:g} s")
        if not cycle.response_started:
            self.transport.write(_TIMEOUT)
        # The application reading the body is told the client is gone (`http.disconnect`);
        # what it sends after that is dropped.
        self.transport.close()
