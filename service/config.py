"""One settings class: every knob comes from a `PGO_WORK_` environment variable.

Why one class: the README documents exactly these fields, and the same values reach the app,
the CLI and Alembic, so there is no second place where a default could drift.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration (environment variables with the `PGO_WORK_` prefix)."""

    model_config = SettingsConfigDict(env_prefix="PGO_WORK_", extra="ignore")

    database_url: str = ""
    """SQLAlchemy async URL; empty means an SQLite file under `data_dir`."""
    data_dir: Path = PROJECT_ROOT / "data"
    profiles_dir: Path = PROJECT_ROOT / "profiles"
    base_url: str = "http://127.0.0.1:8080/fhir"
    """The public base of the FHIR API, used in Location headers, fullUrls and paging links."""
    default_page_size: int = 20
    max_page_size: int = 500
    max_body_bytes: int = 10 * 1024 * 1024
    max_bundle_entries: int = 1000
    max_include_results: int = 1000
    db_pool_size: int = 10
    sql_echo: bool = False

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file so `pgo-work serve` needs no set-up."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{self.data_dir / 'pgo-work.sqlite3'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
