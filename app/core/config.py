"""Settings from the environment (prefix ``OUTCOMES_``)."""

from __future__ import annotations

from functools import lru_cache

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
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: list[str] = []

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
