"""Slow and greedy clients cannot hold `pgo-work serve` (issue 14).

A client trickling its request head or body one byte per second is closed after the configured
timeout while other clients are served, and connections above the cap are answered 503 and
closed without harming the server. Over real sockets, against the real `pgo-work serve`.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from service.config import Settings
from service.store.migrate import upgrade

from .conftest import system_token
from .server_process import Served, serve

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('slow') / 'slow.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[Served]:
    with serve(database, {"PGO_WORK_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
                          "PGO_WORK_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
                          "PGO_WORK_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}) as served:
        yield served


def _trickle(port: int, head: bytes, tail: bytes, give_up: float) -> tuple[float | None, bytes]:
    """Send `head` at once, then `tail` one byte per second; return (seconds until the server
    closed the connection, or None if it had not after `give_up` seconds; what it answered)."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if head:
            sock.sendall(head)
        for i in range(int(give_up)):
            try:
                sock.sendall(tail[i % len(tail): i % len(tail) + 1])
            except OSError:
                return time.monotonic() - started, answer
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                try:
                    chunk = sock.recv(4096)
                except OSError:
                    return time.monotonic() - started, answer
                if not chunk:
                    return time.monotonic() - started, answer
                answer += chunk
                while chunk:
                    chunk = sock.recv(4096)
                    answer += chunk
                return time.monotonic() - started, answer
    return None, answer


def _served_meanwhile(served: Served, results: list[float]) -> threading.Thread:
    def other() -> None:
        time.sleep(0.5)
        started = time.monotonic()
        resp = httpx.get(f"{served.base}/metadata", timeout=5)
        assert resp.status_code == 200
        results.append(time.monotonic() - started)

    thread = threading.Thread(target=other)
    thread.start()
    return thread


def test_trickled_request_head_is_closed_while_others_are_served(server: Served) -> None:
    others: list[float] = []
    thread = _served_meanwhile(server, others)
    closed_after, answer = _trickle(server.port, b"",
                                    b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60,
                                    give_up=HEADER_TIMEOUT + 6)
    thread.join()
    assert closed_after is not None, "a client trickling its headers kept its connection"
    assert HEADER_TIMEOUT - 0.5 <= closed_after <= HEADER_TIMEOUT + 3
    assert answer.startswith(b"HTTP/1.1 408")
    assert others and others[0] < HEADER_TIMEOUT, "another client waited for the slow one"


def test_trickled_request_body_is_closed(server: Served, database: str) -> None:
    token = system_token(Settings(database_url=database, base_url=server.base))
    head = (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 200\r\n\r\n")
    closed_after, answer = _trickle(server.port, head, b'{"resourceType": "Patient"}' + b" " * 80,
                                    give_up=BODY_TIMEOUT + 6)
    assert closed_after is not None, "a client trickling its body kept its connection"
    assert BODY_TIMEOUT - 0.5 <= closed_after <= BODY_TIMEOUT + 3
    assert answer.startswith(b"HTTP/1.1 408")
    assert httpx.get(f"{server.base}/metadata", timeout=5).status_code == 200


def test_connections_above_the_cap_get_503_and_the_server_lives(server: Served) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
            for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # let the server accept them
        extra = httpx.Client(timeout=5)
        try:
            status = extra.get(f"{server.base}/metadata").status_code
        except httpx.TransportError:
            status = None  # refused: closed before it could answer
        finally:
            extra.close()
        assert status in (503, None), status
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.base}/metadata", timeout=5).status_code == 200
    log = "\n".join(server.log_lines())
    assert "Traceback" not in log, log


def test_idle_keep_alive_connections_do_not_stop_new_clients(server: Served) -> None:
    """More idle connections than the cap, opened over time: the idle ones are closed by the
    head deadline, so new clients are served after it."""
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
            for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(HEADER_TIMEOUT + 1)
        for sock in idle:
            sock.settimeout(3)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                pytest.fail("an idle connection that never sent a request is still open")
            assert answer.startswith(b"HTTP/1.1 408")
        resp = httpx.get(f"{server.base}/metadata", timeout=5)
        assert resp.status_code == 200
    finally:
        for sock in idle:
            sock.close()

