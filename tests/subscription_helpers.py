"""A real rest-hook receiver (an HTTP server on a loopback port, in a thread) and builders for
Subscriptions in the Backport IG's R4 form."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from .live_server import free_port

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://pgo-work.nl/fhir/SubscriptionTopic/"


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]

    def status(self) -> dict[str, Any]:
        """The SubscriptionStatus parameters by name (notification-event: a list of parts)."""
        status = self.body["entry"][0]["resource"]
        out: dict[str, Any] = {"notification-event": []}
        for p in status["parameter"]:
            if p["name"] == "notification-event":
                out["notification-event"].append(
                    {q["name"]: next(v for k, v in q.items() if k.startswith("value"))
                     for q in p["part"]})
            else:
                out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
        return out

    @property
    def kind(self) -> str:
        return str(self.status()["type"])

    @property
    def numbers(self) -> list[int]:
        return [int(e["event-number"]) for e in self.status()["notification-event"]]

    @property
    def foci(self) -> list[str]:
        return [e["focus"]["reference"] for e in self.status()["notification-event"]
                if "focus" in e]


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], int] = lambda body: 200
    """The status code to answer a notification with."""
    delay: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, subscription_id: str, kind: str | None = None) -> list[Received]:
        return [r for r in self.received
                if r.status()["subscription"]["reference"].endswith(f"/Subscription/{subscription_id}")
                and (kind is None or r.kind == kind)]

    def wait_for(self, test: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            if time.monotonic() > deadline:
                raise AssertionError(f"not received in time; got {[r.kind for r in self.received]}")
            time.sleep(0.05)


@contextmanager
def receiver() -> Iterator[Receiver]:
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length") or 0)
            body = orjson.loads(self.rfile.read(length))
            sid = body["entry"][0]["resource"]["parameter"][0]["valueReference"]["reference"]
            with box.lock:
                box.in_flight[sid] = box.in_flight.get(sid, 0) + 1
                box.max_in_flight[sid] = max(box.max_in_flight.get(sid, 0), box.in_flight[sid])
            if box.delay:
                time.sleep(box.delay)
            code = box.answer(body)
            with box.lock:
                box.in_flight[sid] -= 1
                if 200 <= code < 300:
                    box.received.append(Received(body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


def subscription(topic: str, endpoint: str, filters: list[str] | None = None,
                 content: str = "id-only", heartbeat: int | None = None,
                 headers: list[str] | None = None, max_count: int | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content",
                                    "valueCode": content}]}}
    extensions = [{"url": BACKPORT + "backport-timeout", "valueUnsignedInt": 5}]
    if heartbeat is not None:
        extensions.append({"url": BACKPORT + "backport-heartbeat-period",
                           "valueUnsignedInt": heartbeat})
    if max_count is not None:
        extensions.append({"url": BACKPORT + "backport-max-count", "valuePositiveInt": max_count})
    channel["extension"] = extensions
    if headers:
        channel["header"] = headers
    resource: dict[str, Any] = {
        "resourceType": "Subscription", "status": "requested",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "reason": "test", "criteria": TOPIC + topic, "channel": channel}
    if filters:
        resource["_criteria"] = {"extension": [{"url": BACKPORT + "backport-filter-criteria",
                                                "valueString": f} for f in filters]}
    return resource
