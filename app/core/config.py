"""Settings from the environment (prefix ``OUTCOMES_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

# Plain URLs name no driver; the service picks the async one it ships with.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTCOMES_", extra="ignore")

    database_url: str = "sqlite:///outcomes.db"
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # How long a SQLite writer waits for the lock before giving up.
    sqlite_busy_timeout_ms: int = 10_000
    log_level: str = "info"
    # A folder of a clinic's own frequency policies (<id>.json), beside the built-in ones.
    policy_dir: str | None = None
    # Resolved tokens are cached this long per process: a revocation made in another process
    # takes effect within it (at once in the process that revoked). 0 turns the cache off.
    token_cache_seconds: float = 1.0
    # On PostgreSQL each process also hears revocations as they commit (LISTEN/NOTIFY): while
    # it does, it keeps tokens this long instead (0: never longer than token_cache_seconds).
    token_cache_pushed_seconds: float = Field(300, ge=0)
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: list[str] = []
    # Limits (app/core/limits.py). A request body over this many bytes is a 413 (a batch of
    # 500 observations is about 100 KB).
    max_body_bytes: int = Field(2 * 1024 * 1024, gt=0)
    # Requests per minute per bearer token (per client address for requests without one) on
    # /api and /fhir, with bursts of up to rate_limit_burst; over it, 429 with Retry-After.
    # 0 (the default) turns it off. Counted in each process: with N workers the effective
    # limit is N times this; a limit shared across workers belongs in the reverse proxy.
    rate_limit_per_minute: float = Field(0, ge=0)
    rate_limit_burst: int = Field(60, ge=1)
    # PostgreSQL cancels any statement running longer than this (a 503 for the request);
    # 0 turns it off. Not applied on SQLite.
    db_statement_timeout_ms: int = Field(5000, ge=0)
    # Idempotency-Key (app/idempotency): a key and its first response are kept this long (at
    # least a day, so a client's retries over a day are safe), and expired keys are purged
    # every idempotency_purge_seconds.
    idempotency_retention_hours: float = Field(24, ge=24)
    idempotency_purge_seconds: float = Field(3600, gt=0)
    # FHIR Bulk Data export (app/fhir/export.py): files are streamed in batches of this many
    # rows (one short query each, so memory stays flat whatever the export's size), and a
    # job's status and files can be fetched for this long after its kick-off.
    export_batch_size: int = Field(1000, gt=0, le=10_000)
    export_retention_hours: float = Field(24, gt=0)
    # SMART Backend Services (app/oauth/backend_services.py): an access token issued at
    # /oauth/token lives this long; SMART recommends 300 s and no more (a client asks for a
    # new one with a new assertion), so an hour is the ceiling.
    oauth_access_token_seconds: int = Field(300, gt=0, le=3600)

    @property
    def async_database_url(self) -> URL:
        return to_async_url(self.database_url)


def to_async_url(raw: str) -> URL:
    """Accept plain ``sqlite:///`` / ``postgresql://`` URLs as well as ones naming a driver."""
    url = make_url(raw)
    driver = _ASYNC_DRIVERS.get(url.drivername)
    return url.set(drivername=driver) if driver else url


@lru_cache
def get_settings() -> Settings:
    return Settings()
