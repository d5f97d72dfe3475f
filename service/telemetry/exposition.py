"""One scrape's answer: the process's (or, under several workers, all processes') request
metrics plus the database gauges read for this scrape, in Prometheus text format."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _Fixed(Collector):
    """Metric families computed before the scrape (the database gauges are read async)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class _Forward(Collector):
    """This process's default registry (its request metrics, process and GC collectors)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def render(db_families: list[Metric]) -> bytes:
    """Under `PROMETHEUS_MULTIPROC_DIR` the request metrics are the sum over every worker's
    files (prometheus_client's multiprocess mode); otherwise this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(_Forward())
    registry.register(_Fixed(db_families))
    return generate_latest(registry)
