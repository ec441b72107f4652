"""Recording an observation on PostgreSQL's two-statement path (app/observations/fast_record.py):
it stores, answers and audits exactly as the general path does, and its failures are the same
retryable 503s, with nothing stored.

The rest of the suite exercises the path too: on PostgreSQL every POST of an observation that
names no course or session and carries no Idempotency-Key takes it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.analytics import pg_reads
from app.core import pg
from app.core.config import Settings
from app.core.limits import ServiceUnavailable
from app.observations.models import Observation
from tests.factories import API, ago, create_patient
from tests.support import assert_problem
from tests.test_limits import Issue, audit_rows, client_of, running


async def _stored(engine: AsyncEngine, observation_id: str) -> int:
    stmt = select(func.count()).where(Observation.id == uuid.UUID(observation_id))
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def _audit(engine: AsyncEngine, request_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        stmt = text(
            "SELECT action, resource_type, resource_id, patient_id, outcome, status, role"
            " FROM audit_events WHERE request_id = :rid"
        )
        return [dict(row._mapping) for row in await conn.execute(stmt, {"rid": request_id})]


def _body() -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "instrument": "pain-nrs", "value": 5, "recorded_at": ago()}


async def test_both_paths_answer_store_and_audit_a_recording_alike(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """An Idempotency-Key sends a POST down the general path (its key commits with the write);
    without one, PostgreSQL takes the two-statement path."""
    patient = await create_patient(client)
    url = f"{API}/patients/{patient['id']}/observations"
    plain, keyed = _body(), _body()
    keyed["recorded_at"] = plain["recorded_at"]

    fast = await client.post(url, json=plain)
    general = await client.post(url, json=keyed, headers={"Idempotency-Key": str(uuid.uuid4())})

    assert fast.status_code == general.status_code == 201
    assert fast.json().keys() == general.json().keys()
    assert {k: v for k, v in fast.json().items() if k not in ("id", "received_at")} == {
        k: v for k, v in general.json().items() if k not in ("id", "received_at")
    }
    listed = {item["id"]: item for item in (await client.get(url)).json()["items"]}
    assert listed == {plain["id"]: fast.json(), keyed["id"]: general.json()}  # as stored
    fast_audit = await _audit(engine, fast.headers["x-request-id"])
    general_audit = await _audit(engine, general.headers["x-request-id"])
    assert len(fast_audit) == len(general_audit) == 1
    assert fast_audit[0] == general_audit[0]
    assert (fast_audit[0]["status"], fast_audit[0]["action"]) == (201, "create")


async def test_an_unknown_patient_is_404_stores_nothing_and_is_audited_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = _body()
    response = await client.post(f"{API}/patients/{uuid.uuid4()}/observations", json=body)

    assert_problem(response, 404)
    assert await _stored(engine, body["id"]) == 0
    rows = await _audit(engine, response.headers["x-request-id"])
    assert [(row["status"], row["outcome"]) for row in rows] == [(404, "allowed")]


@pytest.mark.postgres_only
async def test_the_plain_pool_has_the_statement_timeout(settings: Settings) -> None:
    async with running(settings) as app, app.state.raw_pool.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "5s"


@pytest.mark.postgres_only
async def test_a_recording_cancelled_by_the_statement_timeout_is_a_503_and_stores_nothing(
    settings: Settings, engine: AsyncEngine, issue_token: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await issue_token("clinician")
    async with running(settings, db_statement_timeout_ms=50) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        slow = "SELECT pg_sleep(1), $1::uuid, $2::int"
        monkeypatch.setattr(pg_reads, "ACTIVE_COURSES", slow)
        body = _body()
        response = await c.post(f"{API}/patients/{patient['id']}/observations", json=body)

    problem = assert_problem(response, 503)
    assert problem["type"].endswith("query-timeout")
    assert response.headers["retry-after"] == "1"
    assert await _stored(engine, body["id"]) == 0
    assert await audit_rows(engine, response.headers["x-request-id"]) == 1


@pytest.mark.postgres_only
async def test_a_recording_after_the_database_dropped_a_connection_is_stored_once(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """Whether the pool notices the drop before the request (and reconnects) or the request
    meets the dead connection (a retryable 503 that stored nothing) depends on timing; either
    way the client's retry leaves exactly one observation."""
    token = await issue_token("clinician")
    async with running(settings, db_pool_size=1) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        url = f"{API}/patients/{patient['id']}/observations"
        await c.post(url, json=_body())  # the plain pool's one connection is open
        async with app.state.raw_pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with engine.connect() as admin:  # a restart or failover, as the pool sees it
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        body = _body()
        first = await c.post(url, json=body)
        stored_after_first = await _stored(engine, body["id"])
        retried = await c.post(url, json=body)

    if first.status_code == 503:
        problem = assert_problem(first, 503)
        assert problem["type"].endswith("database-unavailable")
        assert first.headers["retry-after"] == "1"
        assert stored_after_first == 0
        assert retried.status_code == 201
    else:
        assert first.status_code == 201
        assert retried.status_code == 200  # a replay
    assert await _stored(engine, body["id"]) == 1
    assert await audit_rows(engine, first.headers["x-request-id"]) == 1


class _Pool:
    """A pool whose one connection fails with ``error`` (for pg.connection's mapping)."""

    def __init__(self) -> None:
        self.terminated = False

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Pool]:
        yield self

    def terminate(self) -> None:
        self.terminated = True


LOST = "database-unavailable"


@pytest.mark.parametrize(
    ("error", "slug", "terminated"),
    [
        (asyncpg.QueryCanceledError("canceling statement"), "query-timeout", False),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), LOST, False),
        (asyncpg.AdminShutdownError("terminating connection"), LOST, False),
        (asyncpg.InterfaceError("connection is closed"), LOST, False),
        (asyncpg.InternalClientError("another operation is in progress"), LOST, True),
        (ConnectionResetError(), LOST, False),
    ],
    ids=["timeout", "closed", "shutdown", "interface", "internal", "reset"],
)
async def test_the_plain_pool_maps_a_lost_connection_or_a_timeout_to_a_503(
    error: Exception, slug: str, terminated: bool
) -> None:
    pool = _Pool()
    with pytest.raises(ServiceUnavailable) as raised:
        async with pg.connection(pool):
            raise error
    assert raised.value.slug == slug
    assert raised.value.headers == {"Retry-After": "1"}
    assert pool.terminated is terminated  # a connection in an unknown state is not reused


async def test_the_plain_pool_lets_other_database_errors_through() -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with pg.connection(_Pool()):
            raise asyncpg.ForeignKeyViolationError("insert violates foreign key")
