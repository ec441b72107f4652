"""A plain asyncpg pool beside SQLAlchemy's, for the few statements on the hottest paths.

PostgreSQL only. Measured on the benchmark box (one client, uvloop, the same INSERT): a
SQLAlchemy session running one statement and committing costs 0.8–0.9 ms of the worker's CPU;
the statement on a pooled asyncpg connection, in autocommit, costs 0.2 ms. So the most frequent
requests run here: recording observations and trend reads (app/recording/pg_store.py), token
look-ups and reads' audit rows; everything else goes
through SQLAlchemy.

Statements on this pool are single statements, each its own transaction (PostgreSQL runs a
statement, data-modifying CTEs included, atomically), or a batch's explicit transaction that
ends before the connection is released. No session state is ever changed, so a connection goes
back to the pool without asyncpg's reset query (a round trip); an interrupted transaction is
still rolled back by asyncpg itself before the connection is reused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

from app.core.config import Settings
from app.core.errors import DatabaseUnavailable, unavailable

# asyncpg ships no type hints: its pool and connections are Any to mypy.
Pool: TypeAlias = Any
Connection: TypeAlias = Any


async def _keep_session_state(_connection: Any) -> None:
    """Nothing to reset: statements on this pool never change session state."""


def postgres_dsn(settings: Settings) -> str | None:
    """The database URL as asyncpg takes it; None when the database is not PostgreSQL."""
    url = settings.async_database_url
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_pool(settings: Settings) -> Pool | None:
    """The pool of a PostgreSQL deployment (None on SQLite). Sized like SQLAlchemy's, opened
    lazily (no connection at start-up, as SQLAlchemy's engine), with the same statement
    timeout.

    Its statements (the recording pipeline's, app/recording/statements.py) are prepared once
    per connection and always planned generically: each reads one patient's rows by key, so
    one plan fits every patient. Left to choose (``auto``), PostgreSQL kept planning the
    policy's read afresh on every POST (2.5–5 ms a time on the benchmark box, against 0.5 ms
    with the generic plan).
    """
    dsn = postgres_dsn(settings)
    if dsn is None:
        return None
    server_settings = {"plan_cache_mode": "force_generic_plan"}
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(int(settings.db_statement_timeout_ms))
    pool: Pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=settings.db_pool_size,
        reset=_keep_session_state,
        server_settings=server_settings,
        timeout=settings.db_connect_timeout_seconds,  # each connect, as the engine's
    )
    return pool


@asynccontextmanager
async def connection(pool: Pool) -> AsyncIterator[Connection]:
    """A pooled connection; a cancelled statement, a lost connection or a refused one becomes
    the same 503 (with Retry-After) as on SQLAlchemy's sessions (app/core/outages.py)."""
    try:
        async with pool.acquire() as conn:
            try:
                yield conn
            except asyncpg.InternalClientError as exc:
                # E.g. a statement sent just as the server closed the connection (a restart):
                # the protocol's state is unknown, so the connection is never reused.
                conn.terminate()
                raise DatabaseUnavailable("The database connection was lost; retry.") from exc
            except asyncpg.InterfaceError as exc:
                # "connection is closed" is a lost connection; on an open one it is a bug (the
                # wrong number of arguments, say), not a reason for the client to retry.
                if conn.is_closed():
                    raise DatabaseUnavailable("The database connection was lost; retry.") from exc
                raise
    except Exception as exc:
        if (down := unavailable(exc)) is not None:
            raise down from exc
        raise
