"""Test harness.

The database is built by the migrations (never by ``create_all``), once per run; every test
starts from empty tables. ``OUTCOMES_TEST_DATABASE_URL`` picks the database (a SQLite file
in a temporary folder when unset). With ``OUTCOMES_TEST_REQUIRE_POSTGRES=1`` (set by CI for
its PostgreSQL half) PostgreSQL-only tests fail instead of skipping, so that half can
never pass without running them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.auth.service import TokenService
from app.core.config import Settings, to_async_url
from app.core.db import create_sessionmaker
from app.core.state import app_state
from app.main import create_app
from tests.support import Issue, MakeClient, empty_tables, migrate, serving

# `make mutation` runs the tests once per mutant with `--hypothesis-profile=mutation`: every
# mutant meets the same examples, and no example one mutant failed on is replayed against the
# next (an example that also fails on the unmutated code would "kill" every mutant after it).
hypothesis.settings.register_profile("mutation", derandomize=True, database=None)

TEST_DATABASE_URL = os.environ.get("OUTCOMES_TEST_DATABASE_URL", "")
REQUIRE_POSTGRES = os.environ.get("OUTCOMES_TEST_REQUIRE_POSTGRES") == "1"


def _is_postgres(url: str) -> bool:
    return url.startswith("postgres")


def pytest_report_header() -> str:
    return f"database: {'postgresql' if _is_postgres(TEST_DATABASE_URL) else 'sqlite'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _is_postgres(TEST_DATABASE_URL):
        return
    for item in items:
        if item.get_closest_marker("postgres_only"):
            if REQUIRE_POSTGRES:
                item.add_marker(
                    pytest.mark.xfail(reason="PostgreSQL required", strict=True, run=False)
                )
            else:
                item.add_marker(
                    pytest.mark.skip(reason="needs PostgreSQL (OUTCOMES_TEST_DATABASE_URL)")
                )


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if REQUIRE_POSTGRES and not _is_postgres(TEST_DATABASE_URL):
        pytest.exit(
            "OUTCOMES_TEST_REQUIRE_POSTGRES=1 but OUTCOMES_TEST_DATABASE_URL is not PostgreSQL", 3
        )
    if _is_postgres(TEST_DATABASE_URL):
        url = TEST_DATABASE_URL
        asyncio.run(_reset_postgres(url))
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'outcomes-test.db'}"
    migrate(url, "head")
    return url


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(to_async_url(url))
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # The push dispatcher, the purge of dead credentials and the value_days refresh run only
    # in the apps of the tests that use them (tests/push, tests/credentials, tests/analytics):
    # a background task of the session's app only runs while an async test does, and one
    # stopped mid-transaction by a sync test would hold SQLite's write lock through it.
    return Settings(
        database_url=database_url,
        push_dispatch=False,
        credential_purge_seconds=0,
        value_days_refresh_seconds=0,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def engine(app: FastAPI) -> AsyncEngine:
    return app_state(app).engine


@pytest.fixture
def issue_token(engine: AsyncEngine) -> Issue:
    """Issue a real token (as `outcomes tokens create` does) and return its secret."""

    async def issue(
        role: str, patient_id: str | None = None, expires_in_days: float | None = None
    ) -> str:
        async with create_sessionmaker(engine)() as session, session.begin():
            issued = await TokenService(session).issue(
                role, uuid.UUID(patient_id) if patient_id else None, expires_in_days
            )
        return issued.token

    return issue


@pytest.fixture
async def make_client(app: object) -> AsyncIterator[MakeClient]:
    """Clients of the app in-process, each with its own bearer token (or none)."""
    clients: list[httpx.AsyncClient] = []

    def make(token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        c = httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def client(make_client: MakeClient, issue_token: Issue) -> httpx.AsyncClient:
    """A clinician: the role that records and reads clinical data."""
    return make_client(await issue_token("clinician"))


@pytest.fixture
async def admin(make_client: MakeClient, issue_token: Issue) -> httpx.AsyncClient:
    return make_client(await issue_token("admin"))


@pytest.fixture
def anonymous(make_client: MakeClient) -> httpx.AsyncClient:
    return make_client(None)


@pytest.fixture(autouse=True)
async def _empty_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Each test that touches the database starts from, and leaves, empty tables."""
    if not {"engine", "client", "make_client"} & set(request.fixturenames):
        yield
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    yield
    await empty_tables(engine)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The service under uvicorn on 127.0.0.1 (a port the OS picks); its base URL."""
    with serving(create_app(settings)) as url:
        yield url
