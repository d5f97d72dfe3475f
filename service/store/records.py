"""What the store hands back: stored resources and pages, as plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson


@dataclass(frozen=True)
class StoredResource:
    pk: int
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content: str | None
    deleted: bool = False
    method: str | None = None
    """For history entries: POST, PUT or DELETE."""

    def json(self) -> dict[str, Any]:
        if self.content is None:
            raise ValueError("a deleted version has no content")
        loaded: dict[str, Any] = orjson.loads(self.content)
        return loaded

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass
class SearchPage:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None


@dataclass
class HistoryPage:
    entries: list[StoredResource]
    total: int | None = None
    next_cursor: str | None = None
