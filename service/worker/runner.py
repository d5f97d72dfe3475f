"""Run background tasks until told to stop: inside `pgo-work serve` (one runner per worker
process) or alone (`pgo-work worker`).

A task that raises is logged and retried after its idle interval: one bad row or a database
outage must not end the loop (the work stays in its rows and is picked up again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..store.faults import transient
from .tasks import Task

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("pgo_work.worker")


async def run_task(runtime: Runtime, task: Task, stop: asyncio.Event) -> None:
    away = False
    while not stop.is_set():
        try:
            done = await task.run_once(runtime)
            away = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if transient(exc):
                # The database is away: the requests already say so, one line each; the task
                # says it once (at info) and waits with them, its work safe in the rows.
                if not away:
                    log.info("background task %s waits for the database: %s", task.name, exc)
                away = True
            else:
                log.exception("background task %s failed; retrying in %.1f s", task.name,
                              task.idle_seconds)
            done = 0
        if done:
            await asyncio.sleep(0)  # more may be due: look again at once, yielding first
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=task.idle_seconds)


async def run(runtime: Runtime, tasks: list[Task], stop: asyncio.Event) -> None:
    """All tasks side by side until `stop` is set."""
    await asyncio.gather(*(run_task(runtime, t, stop) for t in tasks))


class Background:
    """The runner as a lifespan companion: `start` in the app's startup, `stop` at shutdown."""

    def __init__(self, runtime: Runtime, tasks: list[Task]) -> None:
        self.runtime, self.tasks = runtime, tasks
        self._stop = asyncio.Event()
        self._job: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.tasks:
            self._job = asyncio.create_task(run(self.runtime, self.tasks, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._job is not None:
            try:
                await asyncio.wait_for(self._job, timeout=10)
            except TimeoutError:
                self._job.cancel()
