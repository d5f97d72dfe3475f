"""The background tasks a worker runs, by name. A task is one function that does a bounded
amount of work and says how much it did; the runner calls it again at once while there is work
and after its idle interval when there is none."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtime import Runtime

RunOnce = Callable[["Runtime"], Awaitable[int]]
"""Do at most one batch of work; return how many units were done (0: nothing was due)."""


@dataclass(frozen=True)
class Task:
    name: str
    run_once: RunOnce
    idle_seconds: float = 1.0
    """How long to wait before looking again after a pass that found nothing due."""


def default_tasks() -> list[Task]:
    """Every task this server has. Imported lazily so a module's task registers here without
    the worker package importing the REST layer."""
    from ..operations.bulk import chunks
    from ..subscriptions.delivery import deliver_once

    tasks: list[Task] = [Task("subscription-delivery", deliver_once, idle_seconds=0.5),
                         Task("bulk-export", chunks.run_once, idle_seconds=1.0)]
    return tasks
