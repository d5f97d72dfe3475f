"""Gauges read from the database when Prometheus scrapes: a small registry.

A value that lives in the database (rows stored, the subscription outbox's depth, export jobs
by state) is the same whichever instance or worker process is asked, so it is read once per
scrape, not counted in process memory. A module registers its gauge in one line:

    register_db_gauge("pgo_work_outbox_depth", "Notifications not yet delivered", outbox_depth)

where `outbox_depth(conn)` is an async function returning a float, or, with `labels=("state",)`,
a mapping from label-value tuples to floats. A gauge reads aggregates only (counts, ages), never
row content, and its label values come from a closed set (states, resource types): /metrics
carries no patient data and no ids. A gauge that fails or is slow is left out of that scrape
and its `pgo_work_db_gauge_up` is 0; the scrape itself still answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("pgo_work.metrics")
GaugeValue = float | Mapping[tuple[str, ...], float]
GaugeRead = Callable[[AsyncConnection], Awaitable[GaugeValue]]
GAUGE_SECONDS = 5.0
"""How long all database gauges together may take in one scrape."""


@dataclass(frozen=True)
class DbGauge:
    name: str
    help: str
    read: GaugeRead
    labels: tuple[str, ...] = ()


_GAUGES: dict[str, DbGauge] = {}


def register_db_gauge(name: str, help: str, read: GaugeRead, labels: tuple[str, ...] = ()) -> None:
    """Add (or replace, by name) a gauge read at every scrape."""
    _GAUGES[name] = DbGauge(name, help, read, tuple(labels))


def registered() -> list[DbGauge]:
    return list(_GAUGES.values())


def _family(gauge: DbGauge, value: GaugeValue) -> GaugeMetricFamily:
    family = GaugeMetricFamily(gauge.name, gauge.help, labels=list(gauge.labels))
    if isinstance(value, Mapping):
        for key, number in sorted(value.items()):
            family.add_metric([str(k) for k in key], float(number))
    else:
        family.add_metric([], float(value))
    return family


async def read_all(engine: AsyncEngine, gauges: list[DbGauge] | None = None,
                   timeout: float = GAUGE_SECONDS) -> list[Metric]:
    """Every gauge's family, plus `pgo_work_db_gauge_up{gauge}` saying which could be read."""
    gauges = registered() if gauges is None else gauges
    up = GaugeMetricFamily("pgo_work_db_gauge_up", "1 when the database gauge could be read in "
                           "this scrape, 0 when it failed or took too long", labels=["gauge"])
    families: list[Metric] = []
    try:
        async with asyncio.timeout(timeout), engine.connect() as conn:
            for gauge in gauges:
                try:
                    async with conn.begin():  # its own: a failed one aborts only itself
                        value = await gauge.read(conn)
                    families.append(_family(gauge, value))
                    up.add_metric([gauge.name], 1.0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # one broken gauge must not cost the others
                    log.warning("database gauge %s failed: %s", gauge.name, type(exc).__name__)
                    up.add_metric([gauge.name], 0.0)
    except Exception as exc:  # the database is away or too slow: the scrape still answers
        log.warning("database gauges not read: %s", type(exc).__name__)
        done = {sample.labels["gauge"] for sample in up.samples}
        for gauge in gauges:
            if gauge.name not in done:
                up.add_metric([gauge.name], 0.0)
    return [*families, up]
