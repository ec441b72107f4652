"""A database that cannot answer is a 503 with Retry-After and X-Request-ID on every route,
anonymous ones included, whichever layer meets it (app/core/outages.py); never a plain-text
500. The drivers raise their real exceptions: a real refused port, a real unopenable SQLite
file, a real lock held past the busy timeout, and asyncpg's own errors from its connect."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.state import app_state
from tests.factories import API, create_patient
from tests.support import Issue, client_of, running, silent_port

PATIENT = "00000000-0000-4000-8000-000000000001"
REFUSED_PG = "postgresql://postgres@127.0.0.1:1/outcomes"  # port 1: nothing listens
FHIR = "application/fhir+json"
PROBLEM = "application/problem+json"

# (method, path, bearer token, extra headers, body): one of each kind of request.
REQUESTS: list[tuple[str, str, str | None, dict[str, str], Any]] = [
    ("GET", f"{API}/patients", None, {}, None),  # anonymous: its 401 must be audited
    ("GET", f"{API}/patients/{PATIENT}", "some-token", {}, None),  # token look-up
    ("GET", f"{API}/instruments", "some-token", {}, None),  # not audited, still looked up
    ("POST", f"{API}/patients", "some-token", {}, {"name": "Ada"}),
    ("POST", f"{API}/patients", "some-token", {"Idempotency-Key": "k-1"}, {"name": "Ada"}),
    ("GET", f"/fhir/R4/Patient/{PATIENT}", "some-token", {}, None),
    ("GET", "/fhir/R4/Observation", "some-token", {}, None),  # a search: the token look-up
]


async def _send_each(app: FastAPI) -> list[httpx.Response]:
    responses = []
    for method, path, token, headers, body in REQUESTS:
        # raise_app_exceptions: an exception Starlette re-raises after answering fails the test.
        async with client_of(app, token) as c:
            responses.append(await c.request(method, path, headers=headers, json=body))
    return responses


def assert_unavailable(*responses: httpx.Response) -> None:
    """Each is a 503 in the error format of its path, with Retry-After and the request's id."""
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        assert response.status_code == 503, f"{where}: {response.status_code} {response.text}"
        fhir = response.request.url.path.startswith("/fhir/")
        assert response.headers["content-type"].startswith(FHIR if fhir else PROBLEM), where
        body = response.json()
        if fhir:
            assert body["issue"][0]["code"] == "transient", where
        else:
            assert body["status"] == 503, where
            assert body["type"].startswith("urn:outcomes:problem:"), where
        assert int(response.headers["retry-after"]) >= 1, where
        assert len(response.headers["x-request-id"]) == 32, where


async def test_postgresql_refusing_connections_is_a_503_on_every_route(
    settings: Settings,
) -> None:
    """A real refusal (nothing listens on the port): the raw pool's token look-up, the
    engine's sessions, the audit write and the Idempotency-Key middleware all meet it."""
    async with running(settings, database_url=REFUSED_PG) as app:
        assert_unavailable(*await _send_each(app))
        async with client_of(app) as c:
            assert (await c.get("/healthz")).status_code == 200  # liveness needs no database
            # Nothing to look up and nothing to audit: the 401 needs no database.
            assert (await c.get(f"{API}/instruments")).status_code == 401
            # Discovery is open and holds no data: served without the database, a token sent
            # to it not even looked up.
            for path in ("/fhir/R4/metadata", "/.well-known/smart-configuration"):
                response = await c.get(path, headers={"Authorization": "Bearer some-token"})
                assert response.status_code == 200, path


CONNECT_TIMEOUT_SECONDS = 0.5


async def test_postgresql_that_never_answers_is_a_503_within_the_connect_timeout(
    settings: Settings,
) -> None:
    """The engine's and the raw pool's connects give up after OUTCOMES_DB_CONNECT_TIMEOUT_SECONDS
    (asyncpg alone waits a minute). A request makes a few connects in turn at most (the
    token, the work, its audit row): each answers 503 within a few timeouts."""
    with silent_port() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/outcomes"
        overrides = {"database_url": url, "db_connect_timeout_seconds": CONNECT_TIMEOUT_SECONDS}
        async with running(settings, **overrides) as app:
            for method, path, token, headers, body in [
                *REQUESTS,
                ("GET", "/readyz", None, {}, None),
            ]:
                async with client_of(app, token) as c:
                    started = time.monotonic()
                    response = await c.request(method, path, headers=headers, json=body)
                    elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                if path != "/readyz":  # a probe's answer, not an API one (tests/test_operations)
                    assert_unavailable(response)
                # About 0.5 to 1.1 s measured; ten timeouts leave room for a loaded machine.
                assert elapsed < 10 * CONNECT_TIMEOUT_SECONDS, f"{method} {path}: {elapsed:.1f} s"


async def test_a_sqlite_file_that_cannot_be_opened_is_a_503_on_every_route(
    settings: Settings, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/missing/dir/outcomes.db"
    async with running(settings, database_url=url) as app:
        assert_unavailable(*await _send_each(app))


# asyncpg's own exceptions, raised where it connects (for the engine and for the raw pool).
CONNECT_ERRORS = [
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),  # asyncpg's connect timeout
    socket.gaierror(-2, "Name or service not known"),
    OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"),
]


@pytest.mark.parametrize("error", CONNECT_ERRORS, ids=lambda e: type(e).__name__)
async def test_every_connect_failure_asyncpg_raises_is_a_503_on_every_route(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def refuse(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(asyncpg, "connect", refuse)  # SQLAlchemy's asyncpg dialect
    monkeypatch.setattr(asyncpg.connection, "connect", refuse)  # asyncpg's own pool
    async with running(settings, database_url=REFUSED_PG) as app:
        assert_unavailable(*await _send_each(app))


async def test_an_exhausted_connection_pool_is_a_503(
    settings: Settings, issue_token: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every checkout from the engine waits out its pool timeout (SQLAlchemy's TimeoutError)."""

    def timed_out() -> None:
        raise PoolTimeout("QueuePool limit of size 10 overflow 10 reached")

    token = await issue_token("clinician")
    async with running(settings) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        with monkeypatch.context() as patch:
            patch.setattr(app_state(app).engine.sync_engine.pool, "_do_get", timed_out)
            read = await c.get(f"{API}/patients/{patient['id']}")
            write = await c.post(f"{API}/patients", json={"name": "Ada"})
        again = await c.get(f"{API}/patients/{patient['id']}")
    assert_unavailable(read, write)
    assert again.status_code == 200


async def test_a_sqlite_lock_held_past_the_busy_timeout_is_a_503_and_writes_nothing(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    token = await issue_token("clinician")
    async with (
        running(settings, sqlite_busy_timeout_ms=50) as app,
        client_of(app, token) as c,
    ):
        async with engine.connect() as holder:
            await holder.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock
            response = await c.post(f"{API}/patients", json={"name": "Ada Locked"})
            await holder.rollback()
        listing = await c.get(f"{API}/patients")
    assert_unavailable(response)
    assert listing.json()["items"] == []


@pytest.mark.postgres_only
async def test_a_raw_pool_connection_the_database_dropped_is_never_a_500(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """The token look-up and a read's audit row run on the plain asyncpg pool: a restart that
    kills its connection answers 503 (or, reconnected, 200), and the next request works."""
    token = await issue_token("clinician")
    async with running(settings, token_cache_seconds=0) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        pool = app_state(app).raw_pool
        assert pool is not None
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.1)
        first = await c.get(f"{API}/patients/{patient['id']}")
        then = await c.get(f"{API}/patients/{patient['id']}")
    if first.status_code != 200:
        assert_unavailable(first)
    assert then.status_code == 200


def test_what_counts_as_an_outage() -> None:
    """Outages (retry later) and bugs (500) apart: only the former get a 503."""
    from app.core.outages import outage

    assert outage(ConnectionRefusedError(111, "refused")) == "database-unavailable"
    assert outage(asyncpg.CannotConnectNowError("starting up")) == "database-unavailable"
    assert outage(asyncpg.QueryCanceledError("canceling statement")) == "query-timeout"
    assert outage(asyncpg.UniqueViolationError("duplicate key")) is None
    assert outage(asyncpg.InterfaceError("the wrong number of arguments")) is None
    assert outage(RuntimeError("a bug")) is None
    assert outage(ValueError("a bug")) is None


async def test_an_outage_is_logged_as_one_line_without_its_message(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Zelda MRN-1234"

    async def refuse(*_args: object, **_kwargs: object) -> None:
        raise ConnectionRefusedError(111, f"refused while storing {secret}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncpg, "connect", refuse)
        patch.setattr(asyncpg.connection, "connect", refuse)
        caplog.set_level(logging.INFO)
        async with running(settings, database_url=REFUSED_PG) as app:
            [response] = [r for r in await _send_each(app) if r.request.method == "POST"][:1]
    assert_unavailable(response)
    assert secret not in caplog.text
    assert response.headers["x-request-id"] in caplog.text
    assert "Traceback" not in caplog.text
