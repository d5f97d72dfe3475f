"""Slow and idle clients: 200 idle keep-alive connections and a client sending its request head
at one byte per second do not stop others from being served; the trickler is cut off by the
header deadline."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from .common import Config, Result, Server, database, headers, percentile, token

IDLE = 200
SERVED = 50


def _idle_connection(port: int, tok: str) -> socket.socket:
    """A connection that made one request, read its answer, and then stays open, silent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.recv(65536)
    return sock


def _trickle(port: int, give_up: float, outcome: dict[str, float | str]) -> None:
    head = b"GET /fhir/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=give_up) as sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                sock.settimeout(1.0)
                try:
                    data = sock.recv(4096)
                    outcome["answer"] = data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
                    break
                except TimeoutError:
                    pass
                if time.monotonic() - began > give_up:
                    outcome["answer"] = "still open"
                    break
        except OSError as exc:
            outcome["answer"] = f"closed ({type(exc).__name__})"
    outcome["seconds"] = time.monotonic() - began


def run(cfg: Config) -> list[Result]:
    result = Result("slow and idle clients")
    header_timeout = 5 if cfg.quick else 10
    with database("sqlite") as url, Server(url, env={
            "PGO_WORK_HEADER_TIMEOUT_SECONDS": str(header_timeout),
            "PGO_WORK_MAX_CONNECTIONS": "500"}) as server:
        tok = token(url, server.base)
        idle = [_idle_connection(server.port, tok) for _ in range(IDLE)]
        trickled: dict[str, float | str] = {}
        slow = threading.Thread(target=_trickle, args=(server.port, header_timeout * 3, trickled))
        slow.start()
        time.sleep(1)
        latencies, statuses = [], []
        with httpx.Client(base_url=server.base + "/", timeout=10) as client:
            for _ in range(SERVED):
                began = time.monotonic()
                try:
                    statuses.append(client.get("Patient", headers=headers(tok)).status_code)
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)  # type: ignore[arg-type]
                latencies.append((time.monotonic() - began) * 1000)
        slow.join(timeout=header_timeout * 4)
        idle_alive = sum(1 for s in idle if _alive(s))
        for s in idle:
            s.close()
    ok = statuses.count(200)
    result.add("idle keep-alive connections", IDLE)
    result.add("idle connections still open afterwards", idle_alive)
    result.add("other client's requests answered 200", f"{ok} / {SERVED}")
    result.add("their latency p50 / p99 (ms)",
               f"{percentile(latencies, 50):.0f} / {percentile(latencies, 99):.0f}")
    result.add("header timeout (s)", header_timeout)
    result.add("1 byte/s client: answer", trickled.get("answer", "-"))
    result.add("1 byte/s client: cut off after (s)", f"{float(trickled.get('seconds', 0)):.1f}")
    result.check(ok == SERVED, f"only {ok}/{SERVED} served alongside idle and slow clients")
    result.check(float(trickled.get("seconds", 1e9)) <= header_timeout + 3
                 and trickled.get("answer") != "still open", "the 1 byte/s client was not cut off")
    return [result]


def _alive(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
