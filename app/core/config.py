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
    # PostgreSQL: a connection not established within this many seconds (the server down
    # behind a firewall that drops packets, say, rather than refusing them) is given up, and
    # the request that needed it answers 503; asyncpg's own default would hold it a minute.
    db_connect_timeout_seconds: float = Field(5, gt=0)
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
    # The system of the FHIR Patient.identifier that carries a patient's external_id (the MRN),
    # and the one `Patient?identifier=<system>|<value>` matches: a clinic sets its own (e.g.
    # `urn:oid:` and its assigning authority's OID). The default is the URI v1 has always
    # emitted (app/fhir/terminology.py): EHRs store it with the identifiers they pulled. An
    # absolute URI with none of FHIR's search separators (`|`, `,`, `$`, `\`) or whitespace,
    # so a client writes it in a search as it is.
    fhir_identifier_system: str = Field(
        "https://outcomes.example/fhir/NamingSystem/patient-external-id",
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s|,$\\]+$",
    )
    # Bounded cost (app/analytics/days.py): every process recomputes, every
    # value_days_refresh_seconds, the reduced days whose values changed at least
    # value_days_settle_seconds ago (a day still receiving values waits until it is quiet).
    # Until then a read takes that day's values as they are: the figures are the same.
    # 0 turns the refresh off in this process (another process, or none: reads stay exact).
    value_days_refresh_seconds: float = Field(5, ge=0)
    value_days_settle_seconds: float = Field(60, ge=0)
    # Push (app/push, docs/push.md). Every process runs a dispatcher unless this is off.
    push_dispatch: bool = True
    # Receivers may use http (not only https) on these hosts: comma-separated names or
    # addresses, e.g. "127.0.0.1,localhost" for tests. Empty: https only.
    webhook_allowed_hosts: str = ""
    # How often a dispatcher fans out new events and looks for due deliveries and heartbeats
    # (it claims again as soon as an attempt ends, too).
    push_poll_seconds: float = Field(0.5, gt=0)
    # One attempt's time limit, in all (connect, send, answer); attempts in flight per process, and
    # per subscription (a slow receiver takes at most this many of the process's slots).
    push_timeout_seconds: float = Field(10, gt=0)
    push_concurrency: int = Field(16, ge=1)
    push_per_subscription: int = Field(4, ge=1)
    # Retries: exponential backoff with jitter from push_retry_base_seconds, each wait at most
    # push_retry_max_seconds, for push_retry_window_hours after the event; then `failed`.
    push_retry_base_seconds: float = Field(5, gt=0)
    push_retry_max_seconds: float = Field(3600, gt=0)
    push_retry_window_hours: float = Field(24, gt=0)
    # Delivered events (and events no subscription wanted) are purged after this long.
    push_retention_hours: float = Field(168, gt=0)

    @property
    def webhook_http_hosts(self) -> frozenset[str]:
        return _hosts(self.webhook_allowed_hosts)

    # Patient app enrolment (app/enrolment): the lifetime of an app's access token (short: a
    # stolen one is good for this long at most) and of each refresh token (every refresh issues
    # a new one, so an app used at least this often stays enrolled).
    oauth_app_access_token_seconds: int = Field(900, gt=0, le=86_400)
    oauth_refresh_token_days: float = Field(90, gt=0, le=3650)
    # The token endpoint (app/oauth/throttle.py): a client address that has failed this many
    # times within any oauth_failure_window_seconds (wrong codes, dead refresh tokens, bad
    # assertions, malformed requests) gets a 429 until its failures age out. Counted in the
    # database, so the bound holds across workers and machines. 0 turns it off.
    oauth_failure_limit: int = Field(20, ge=0)
    oauth_failure_window_seconds: int = Field(900, gt=0, le=86_400)
    # SMART Backend Services (app/oauth/backend_services.py): an access token issued at
    # /oauth/token lives this long; SMART recommends 300 s and no more (a client asks for a
    # new one with a new assertion), so an hour is the ceiling.
    oauth_access_token_seconds: int = Field(300, gt=0, le=3600)
    # Clients registered with a jwks_url (app/oauth/key_sets.py): their key set is fetched
    # over https (http only to these hosts: comma-separated names or addresses, e.g.
    # "127.0.0.1" for tests; empty: https only), each fetch given at most
    # oauth_jwks_timeout_seconds in all, and kept for its Cache-Control max-age, or
    # oauth_jwks_cache_seconds without one (never longer than an hour: a key the client
    # removes stops working within that). An assertion naming a kid the kept set lacks fetches
    # it again at once (a key rotated in), but no client's set is fetched more often than
    # every oauth_jwks_refetch_seconds, whatever happens.
    oauth_jwks_allowed_hosts: str = ""
    oauth_jwks_timeout_seconds: float = Field(5, gt=0, le=60)
    oauth_jwks_cache_seconds: float = Field(300, gt=0, le=3600)
    oauth_jwks_refetch_seconds: float = Field(30, ge=0, le=3600)
    # Dead credentials (app/credentials/purge.py): access tokens expired or revoked, enrolment
    # codes expired or burned, refresh tokens expired or revoked, are deleted once they have
    # been dead this long (kept meanwhile for GET /tokens and for investigating); every
    # process looks for them every credential_purge_seconds (0: never, for a deployment that
    # runs `outcomes tokens purge` on a schedule of its own instead). Spent assertion ids and
    # the token endpoint's old failure counts, which serve nothing once out of their window,
    # go then too.
    credential_retention_hours: float = Field(168, ge=0)
    credential_purge_seconds: float = Field(3600, ge=0)

    @property
    def jwks_http_hosts(self) -> frozenset[str]:
        return _hosts(self.oauth_jwks_allowed_hosts)

    @property
    def async_database_url(self) -> URL:
        return to_async_url(self.database_url)


def _hosts(listed: str) -> frozenset[str]:
    """Comma-separated host names or addresses, as a set in lower case."""
    return frozenset(h.strip().lower() for h in listed.split(",") if h.strip())


def to_async_url(raw: str) -> URL:
    """Accept plain ``sqlite:///`` / ``postgresql://`` URLs as well as ones naming a driver."""
    url = make_url(raw)
    driver = _ASYNC_DRIVERS.get(url.drivername)
    return url.set(drivername=driver) if driver else url


@lru_cache
def get_settings() -> Settings:
    return Settings()
