"""Run the real app under uvicorn on a free loopback port, for clients that need a socket."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from service.config import Settings
from service.http_server import server_options
from service.main import create_app


def wait_until_up(url: str, proc: subprocess.Popen[Any], timeout: float,
                  why_not: Callable[[], str]) -> None:
    """Poll `url` until it answers 200; a process that exits or a deadline that passes first is
    a RuntimeError carrying `why_not()` (its log), so a failed start says why."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pgo-work serve did not start:\n{why_not()}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """Yields the FHIR base URL of a server running in a background thread."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    app = create_app(settings.model_copy(update={"base_url": base}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", **server_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
