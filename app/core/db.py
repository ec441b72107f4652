"""Engine, session dependency, declarative base and column types shared by every domain."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Response
from sqlalchemy import ColumnElement, DateTime, Dialect, MetaData, Table, event, exists
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from app.core.config import Settings
from app.core.errors import unavailable
from app.core.state import app_state

# Named constraints let migrations create, alter and drop them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """A model's Table, for plain Core statements on hot paths (no ORM bookkeeping)."""
    return cast(Table, model.__table__)


def unreferenced(table: Table) -> list[ColumnElement[bool]]:
    """Conditions that hold for a row of ``table`` no row elsewhere refers to by a foreign key
    that neither cascades nor sets null: the rows a purge may delete without failing (or
    leaving another row pointing nowhere). Every table of the metadata is looked at, so a
    table added later that refers to ``table`` is honoured too."""
    return [
        ~exists().where(foreign_key.parent == foreign_key.column)
        for other in table.metadata.sorted_tables
        for foreign_key in other.foreign_keys
        if foreign_key.column.table is table and foreign_key.ondelete is None
    ]


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zone type, so the value is stored
    as naive UTC and marked UTC again when read (ISO text in UTC sorts chronologically).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` ids as ``new_id`` makes them (random, version 4) from one read of the OS's
    random source: a batch's ids in one system call instead of one each."""
    random = os.urandom(16 * count)
    return [uuid.UUID(bytes=random[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.async_database_url
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url, connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000}
        )
        _configure_sqlite(engine, settings)
        return engine
    connect_args: dict[str, Any] = {}
    if url.get_driver_name() == "asyncpg":
        # A connect the database never answers (its packets dropped, not refused) is given
        # up: the request waiting for it answers 503 (an OSError: app/core/outages.py).
        connect_args["timeout"] = settings.db_connect_timeout_seconds
    if settings.db_statement_timeout_ms and url.get_driver_name() == "asyncpg":
        # Every statement of every connection is bounded: a runaway query cannot hold a
        # connection (and the pool) for long; get_session answers a cancelled one with a 503.
        statement_timeout = str(int(settings.db_statement_timeout_ms))
        connect_args["server_settings"] = {"statement_timeout": statement_timeout}
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: it is a round trip on every checkout. A connection found dead is
        # invalidated (the whole pool with it, SQLAlchemy's default) and the request that met
        # it answers 503 with Retry-After (get_session), so clients retry on fresh connections.
        connect_args=connect_args,
    )


def _configure_sqlite(engine: AsyncEngine, settings: Settings) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") == READS:
            return  # a read request: each statement on its own, no lock held between them
        # IMMEDIATE takes the write lock up front: two deferred transactions that both read
        # and then write would otherwise fail with "database is locked" instead of waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: responses are serialised after the session commits.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


# Read requests (GET, HEAD) run their statements without an explicit transaction. Under READ
# COMMITTED, PostgreSQL's default, every statement already sees its own snapshot, so a
# transaction around reads only cost a BEGIN and a COMMIT round trip; the read's one write,
# its audit row, is a single INSERT that commits by itself. On SQLite a read then no longer
# takes the write lock (BEGIN IMMEDIATE) either.
READS = "AUTOCOMMIT"


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    reads = engine.execution_options(isolation_level=READS)
    return async_sessionmaker(reads, expire_on_commit=False, autoflush=False)


CommitHook = Callable[[AsyncSession, int], Awaitable[None]]


def before_commit(request: Request, hook: CommitHook) -> None:
    """Run ``hook(session, status)`` in the request's transaction, just before it commits
    (the audit trail uses it so a write and its audit row land together or not at all)."""
    # In the scope's state: every Request object of this request (dependencies, handlers)
    # sees the same dict.
    hooks: list[CommitHook] = request.scope.setdefault("state", {}).setdefault("before_commit", [])
    hooks.append(hook)


def _success_status(request: Request, response: Response) -> int:
    if response.status_code is not None:
        return response.status_code
    status: int | None = getattr(request.scope.get("route"), "status_code", None)
    return status or 200


async def get_session(request: Request, response: Response) -> AsyncIterator[AsyncSession]:
    """One session per request; it commits once, after the endpoint returns, or rolls back.
    A read request's session runs each statement on its own (``READS``).

    A session the request never used (the plain pool's paths: recording observations, trend
    reads, token look-ups) is neither committed nor closed: it holds no connection, and the
    two calls cost ~0.2 ms of CPU, a tenth of such a request."""
    reading = request.method in ("GET", "HEAD")
    state = app_state(request)
    sessionmaker = state.read_sessionmaker if reading else state.sessionmaker
    session = sessionmaker()
    used = True  # until the request ends well without touching it
    try:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        for hook in request.scope.get("state", {}).get("before_commit", ()):
            await hook(session, _success_status(request, response))
        used = _used(session)
        if used:
            await session.commit()
    except Exception as exc:
        # The database restarted, dropped the connection, refused a new one, or cancelled a
        # statement (statement_timeout): a 503 with Retry-After, not a bug.
        if (down := unavailable(exc)) is not None:
            raise down from exc
        raise
    finally:
        if used:
            await session.close()


def _used(session: AsyncSession) -> bool:
    """Whether a transaction was begun, or objects wait for the commit's flush."""
    return session.in_transaction() or bool(session.new or session.dirty or session.deleted)


# scope="function": the commit happens before the response is sent, so a failed commit
# becomes an error response instead of a lost write behind a 201.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
