"""Request counts and latencies by FHIR interaction, resource type and status class.

The metric objects live at module level in prometheus_client's default registry. Under
`pgo-work serve --workers N` every worker process writes its values to files in the shared
multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, set up by `service.telemetry.multiproc`
before the workers start) and a scrape answered by any worker sums them all
(`service.telemetry.exposition`).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from .classify import Interaction

LABELS = ("interaction", "resource_type", "operation", "status_class")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds, from a cached read (a few ms) to a search the statement timeout (10 s) stops."""

REQUESTS = Counter("pgo_work_http_requests", "HTTP requests answered, by FHIR interaction, "
                   "resource type, operation and status class", LABELS)
LATENCY = Histogram("pgo_work_http_request_duration_seconds", "Time from a request's arrival to "
                    "the end of its answer, by FHIR interaction, resource type, operation and "
                    "status class", LABELS, buckets=LATENCY_BUCKETS)


def status_class(status: int) -> str:
    """`2xx`, `4xx`, `5xx`: the class, never the code, keeps the series few."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


def observe(what: Interaction, status: int, seconds: float) -> None:
    labels = (what.interaction, what.resource_type, what.operation, status_class(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)
