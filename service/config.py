"""One settings class: every knob comes from a `PGO_WORK_` environment variable.

Why one class: the README documents exactly these fields, and the same values reach the app,
the CLI and Alembic, so there is no second place where a default could drift.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration (environment variables with the `PGO_WORK_` prefix)."""

    model_config = SettingsConfigDict(env_prefix="PGO_WORK_", extra="ignore")

    database_url: str = ""
    """SQLAlchemy async URL; empty means an SQLite file under `data_dir`."""
    data_dir: Path = PROJECT_ROOT / "data"
    profiles_dir: Path = PROJECT_ROOT / "profiles"
    host: str = "127.0.0.1"
    """The interface `pgo-work serve` listens on (its `--host`)."""
    port: int = 8080
    """The port `pgo-work serve` listens on (its `--port`)."""
    base_url: str = ""
    """The public base of the FHIR API, used in Location headers, fullUrls, paging links and
    the token audience. Empty: `http://{host}:{port}/fhir`, the address the server listens on;
    set it behind a proxy or load balancer, where the public address differs (it always wins)."""
    cors_origins: str = ""
    """Comma-separated origins browser apps may call the API and token endpoint from (CORS),
    or `*` for any; empty: no cross-origin access."""
    default_page_size: int = 20
    max_page_size: int = 500
    max_body_bytes: int = 10 * 1024 * 1024
    max_bundle_entries: int = 1000
    max_include_results: int = 1000
    client_ids_for: str = "service"
    """Roles (comma-separated) whose callers may choose the id of a new resource (update as
    create). Anyone who may can tell a taken id from a free one, so by default only the
    operator's `service` clients, who see everything anyway; everyone else creates with POST."""
    max_search_values: int = Field(default=1000, gt=0, le=5000)
    """Comma-separated values in one search, over all its parameters (an OR list compiles to
    one IN per shape, but a range or pattern value is up to four bound parameters, and a statement
    takes at most 32,767 of them)."""
    max_search_criteria: int = Field(default=50, gt=0, le=500)
    """Search parameters (criteria, `_include`s, `_sort`) in one search: each is a join the
    database plans and runs, so a request repeating one parameter hundreds of times is refused
    (at most 500: SQLite joins at most 500 selects in one INTERSECT)."""
    max_url_bytes: int = Field(default=32768, gt=0, le=65000)
    """Longer request targets (path and query) get 414; long searches belong in POST `_search`.
    At most 65,000: the HTTP parser handles no longer URLs (`service.http_server`)."""
    statement_timeout_ms: int = 10000
    """Any SQL statement of a request running longer is cancelled (PostgreSQL `statement_timeout`,
    an SQLite progress handler) and the request answered 503 `too-costly`; 0 means no bound."""
    db_pool_size: int = 10
    db_connect_timeout_seconds: float = 5.0
    """How long opening a database connection may take (PostgreSQL) before the request gets 503."""
    db_command_timeout_seconds: float = 60.0
    """Client-side bound on one database command (PostgreSQL), so no request hangs on a
    database that stopped answering."""
    retry_after_seconds: int = 5
    """`Retry-After` of the 503 answered while the database is unavailable."""
    header_timeout_seconds: float = 10.0
    """`pgo-work serve`: a request line and headers must arrive within this time."""
    body_timeout_seconds: float = 60.0
    """`pgo-work serve`: a request body must arrive within this time of its headers."""
    max_connections: int = 500
    """`pgo-work serve`: open connections per worker process (kept below its file limit);
    more are answered 503 and closed."""
    sql_echo: bool = False
    log_format: Literal["text", "json"] = "text"
    """`text`: uvicorn's lines; `json`: one JSON object per line (time, level, logger, message,
    correlation id; method, route, status and duration on access lines), `service.telemetry.logs`."""
    metrics_token: str = ""
    """When set, `GET /metrics` requires `Authorization: Bearer <this>`; empty: open, like
    /healthz (it carries no ids and no patient data)."""
    metrics_dir: Path | None = None
    """`pgo-work serve --workers N`: the folder the worker processes share their metric values
    in (emptied at start, one per server); unset: a temporary folder removed at exit."""
    run_worker: bool = False
    """Run the background tasks (subscription deliveries, exports) in this process. `pgo-work
    serve` turns it on unless `--no-worker`; `pgo-work worker` runs them alone. Off for an app
    built in tests, which drive the tasks themselves."""
    subscription_max_attempts: int = 5
    """Failed deliveries in a row after which a Subscription's status becomes `error`."""
    subscription_retry_seconds: float = 2.0
    """The first retry's delay; each further one doubles it (at most 10 minutes)."""
    subscription_claim_batch: int = 4
    """Subscriptions one delivery pass leases (and then serves one after the other): small, so
    that several instances share the work."""
    export_chunk_size: int = Field(default=1000, gt=0, le=10000)
    """Resources per export chunk: one transaction, one NDJSON file, one cursor step."""
    export_retention_seconds: int = Field(default=3600, gt=0)
    """How long a finished export's files stay downloadable (then 404, files deleted)."""
    export_max_run_seconds: int = Field(default=86400, gt=0)
    """An export that has not finished by then expires like a finished one."""

    # -- identity and tokens ----------------------------------------------------------------
    oidc_issuer: str = ""
    """An external OpenID Connect issuer whose tokens are accepted; empty means the built-in
    authorization server issues and verifies tokens with its own keys (kept in the database)."""
    token_audience: str = ""
    """The `aud` every access token must carry; empty means `base_url`."""
    token_clock_skew_seconds: int = 60
    """Leeway for exp, nbf and iat, so small clock differences between hosts do not reject tokens."""
    jwks_cache_seconds: int = 3600
    """How long an external issuer's discovery document and JWKS are reused."""
    jwks_refetch_seconds: int = 30
    """At most one JWKS refetch per this many seconds when a token names an unknown key."""
    oidc_http_timeout_seconds: float = 5.0
    auth_issuer: str = ""
    """The built-in issuer's identifier (`iss`); empty means `base_url` without its `/fhir`."""
    access_token_minutes: int = 15
    refresh_token_days: int = 182
    """MedMij: a long-lasting authorisation is carried by refresh tokens valid for half a year."""
    auth_code_seconds: int = 120
    client_assertion_max_seconds: int = 300
    """SMART Backend Services: a client assertion may live at most five minutes."""

    @model_validator(mode="after")
    def _default_base_url(self) -> Settings:
        if not self.base_url:
            host = self.host
            if host in ("0.0.0.0", "::", ""):  # all interfaces: this machine's loopback answers
                host = "127.0.0.1"
            elif ":" in host and not host.startswith("["):
                host = f"[{host}]"  # an IPv6 literal in a URL
            self.base_url = f"http://{host}:{self.port}/fhir"
        return self

    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file so `pgo-work serve` needs no set-up."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{self.data_dir / 'pgo-work.sqlite3'}"

    def resolved_audience(self) -> str:
        """The audience access tokens must name: the FHIR base URL unless configured."""
        return (self.token_audience or self.base_url).rstrip("/")

    def resolved_issuer(self) -> str:
        """The built-in issuer: the public root the `/auth` and `/.well-known` endpoints live under."""
        if self.auth_issuer:
            return self.auth_issuer.rstrip("/")
        base = self.base_url.rstrip("/")
        return base[: -len("/fhir")] if base.endswith("/fhir") else base


@lru_cache
def get_settings() -> Settings:
    return Settings()
