"""The folder where `pgo-work serve --workers N` processes keep their metric values.

prometheus_client's multiprocess mode: each worker process writes its counters and histograms
to memory-mapped files named by its pid in `PROMETHEUS_MULTIPROC_DIR`, and a scrape answered by
any worker sums every file, so /metrics tells the whole server's numbers, not one worker's
share. The variable must be set before the workers import prometheus_client, so `serve` sets it
here, in the parent, before uvicorn starts them (they inherit the environment).

Which folder, and its cleaning: `PGO_WORK_METRICS_DIR` (or `PROMETHEUS_MULTIPROC_DIR`) when set,
its metric files removed at start (values of an earlier run would otherwise be added to this
run's; one folder per server, never shared by two); otherwise a fresh temporary folder, removed
when the server stops. Files of a worker that died and was replaced stay until then: its counts
still belong in the totals, as counters never go down. A single process (`--workers 1`) without
a configured folder keeps its values in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .exposition import MULTIPROC_ENV

METRIC_FILE_PREFIXES = ("counter_", "histogram_", "gauge_", "summary_")


def wipe(folder: Path) -> None:
    """Remove prometheus_client's files of an earlier run (only those)."""
    for path in folder.glob("*.db"):
        if path.name.startswith(METRIC_FILE_PREFIXES):
            path.unlink(missing_ok=True)


@contextmanager
def multiprocess_dir(workers: int, configured: Path | None) -> Iterator[Path | None]:
    """Set `PROMETHEUS_MULTIPROC_DIR` for the worker processes to come; yields the folder or
    None (one process, values in memory)."""
    if configured is None and os.environ.get(MULTIPROC_ENV):
        configured = Path(os.environ[MULTIPROC_ENV])
    if configured is None and workers <= 1:
        yield None
        return
    owned = configured is None
    folder = Path(tempfile.mkdtemp(prefix="pgo-work-metrics-")) if configured is None else configured
    folder.mkdir(parents=True, exist_ok=True)
    wipe(folder)
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
