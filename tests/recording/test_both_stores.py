"""The recording pipeline's two stores seen through HTTP: on PostgreSQL a request without an
Idempotency-Key runs on the plain pool (app/recording/pg_store.py: a POST in two statements,
a batch in one transaction), one with a key on its SQLAlchemy session
(app/recording/session_store.py, its key committing with the write). Either stores, answers,
audits and applies the policy alike, and the plain pool's failures are retryable 503s, with
nothing stored.

The tests that compare the two run on SQLite as well, where both are the session store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core import pg
from app.core.config import Settings
from app.core.limits import ServiceUnavailable
from app.core.state import app_state
from app.observations.models import Observation
from app.recording import pg_store
from tests.analytics.support import (
    RESPONDER,
    SEVEN_DAYS,
    assert_frequency,
    assert_stepped_down_once,
    backdate,
    get_course,
    history,
    moment,
    scenario,
)
from tests.factories import API, ago, create_course, create_patient
from tests.support import Issue, assert_problem, audit_rows, client_of, running


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


def _raw_pool(app: FastAPI) -> pg.Pool:
    pool = app_state(app).raw_pool
    assert pool is not None  # PostgreSQL
    return pool


def _body() -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "instrument": "pain-nrs", "value": 5, "recorded_at": ago()}


async def test_both_paths_answer_store_and_audit_a_recording_alike(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """An Idempotency-Key sends a POST to the session store (its key commits with the write);
    without one, PostgreSQL takes the plain pool."""
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


# --- batches --------------------------------------------------------------------------------------


async def _post_batch(
    client: httpx.AsyncClient, patient_id: str, items: list[Any], *, general: bool = False
) -> httpx.Response:
    """POST a batch; ``general`` sends it to the session store (an Idempotency-Key)."""
    headers = {"Idempotency-Key": str(uuid.uuid4())} if general else {}
    url = f"{API}/patients/{patient_id}/observations/batch"
    return await client.post(url, json={"observations": items}, headers=headers)


def _results(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _without_ids(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in result.items() if k != "id"} for result in results]


async def _listed(client: httpx.AsyncClient, patient_id: str) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{API}/patients/{patient_id}/observations", params={"limit": 500})
    return {item["id"]: item for item in response.json()["items"]}


def _content(observation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in observation.items() if k not in ("id", "received_at")}


@asynccontextmanager
async def _observation_inserts(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """The INSERTs into observations that SQLAlchemy sends meanwhile."""
    statements: list[str] = []

    def capture(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        if statement.startswith("INSERT INTO observations"):
            statements.append(statement)

    event.listen(engine.sync_engine, "after_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", capture)


async def test_both_paths_answer_store_and_audit_a_batch_alike(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    plain = [_body() | {"value": v, "recorded_at": ago(hours=5 - v)} for v in range(3)]
    plain.append(_body() | {"value": 11})  # out of range: rejected
    keyed = [item | {"id": str(uuid.uuid4())} for item in plain]  # the same, under other ids

    async with _observation_inserts(engine) as through_sqlalchemy:
        fast = await _post_batch(client, patient["id"], plain)
    general = await _post_batch(client, patient["id"], keyed, general=True)

    assert [r["status"] for r in _results(fast)] == ["created"] * 3 + ["rejected"]
    assert _without_ids(_results(fast)) == _without_ids(_results(general))
    assert [r["id"] for r in _results(fast)] == [item["id"] for item in plain]
    listed = await _listed(client, patient["id"])
    assert listed.keys() == {item["id"] for item in plain[:3] + keyed[:3]}
    for fast_item, general_item in zip(plain[:3], keyed[:3], strict=True):
        assert _content(listed[fast_item["id"]]) == _content(listed[general_item["id"]])
    fast_audit = await _audit(engine, fast.headers["x-request-id"])
    general_audit = await _audit(engine, general.headers["x-request-id"])
    assert len(fast_audit) == len(general_audit) == 1
    assert fast_audit[0] == general_audit[0]
    assert (fast_audit[0]["status"], fast_audit[0]["action"]) == (200, "create")
    # PostgreSQL stored the plain batch past SQLAlchemy; SQLite has only the session store.
    assert (through_sqlalchemy == []) is (engine.dialect.name == "postgresql")


async def test_every_field_of_a_batch_item_is_stored_exactly_and_a_replay_is_all_duplicates(
    client: httpx.AsyncClient,
) -> None:
    """Optional fields set on some items and not others (a column of values and NULLs), a
    fractional value, a moment given in another offset."""
    patient = await create_patient(client)
    items = [
        _body() | {"instrument": "rom-lumbar-flexion", "value": 37.25, "context": "movement"},
        _body() | {"source": "device", "note": "après la marche, ça tire"},
        _body() | {"recorded_at": "2026-01-05T09:30:00.123456+02:00", "context": "morning"},
    ]

    created = await _post_batch(client, patient["id"], items)
    replayed = await _post_batch(client, patient["id"], items)

    assert [r["status"] for r in _results(created)] == ["created"] * 3
    assert [r["status"] for r in _results(replayed)] == ["duplicate"] * 3
    listed = await _listed(client, patient["id"])
    for item in items:
        stored = listed[item["id"]]
        assert stored["value"] == item["value"]
        assert datetime.fromisoformat(stored["recorded_at"]) == datetime.fromisoformat(
            item["recorded_at"]
        )
        for name in ("instrument", "context", "source", "note"):
            assert stored[name] == item.get(name), name


async def test_new_repeated_and_clashing_ids_are_resolved_as_on_the_general_path(
    client: httpx.AsyncClient,
) -> None:
    others = await create_patient(client)
    results: dict[bool, list[dict[str, Any]]] = {}
    for general in (False, True):
        patient = await create_patient(client)
        stored, clashing, repeated, foreign = _body(), _body(), _body(), _body()
        _results(await _post_batch(client, patient["id"], [stored, clashing]))
        _results(await _post_batch(client, others["id"], [foreign]))
        items = [
            _body(),  # new
            stored,  # already stored, the same content: a replay
            clashing | {"value": 9},  # already stored, other content
            foreign,  # another patient's
            repeated,  # new, then repeated in the batch...
            dict(repeated),  # ... as an identical copy
            repeated | {"value": 1},  # ... and with other content
            _body() | {"value": -1},  # invalid
        ]
        results[general] = _results(
            await _post_batch(client, patient["id"], items, general=general)
        )

        listed = await _listed(client, patient["id"])
        assert listed.keys() == {items[0]["id"], stored["id"], clashing["id"], repeated["id"]}
        assert listed[clashing["id"]]["value"] == clashing["value"]  # unchanged
        assert listed[repeated["id"]]["value"] == repeated["value"]  # the first one's

    assert [r["status"] for r in results[False]] == [
        "created",
        "duplicate",
        "rejected",
        "rejected",
        "created",
        "duplicate",
        "rejected",
        "rejected",
    ]
    assert _without_ids(results[False]) == _without_ids(results[True])


@pytest.mark.parametrize("general", [False, True], ids=["plain", "keyed"])
@pytest.mark.parametrize("ids", ["new", "stored"])
async def test_an_unknown_patients_batch_is_404_stores_nothing_and_is_audited_once(
    client: httpx.AsyncClient, engine: AsyncEngine, general: bool, ids: str
) -> None:
    """Whether its ids are new (the INSERT's foreign key fails) or all stored already (another
    patient's: nothing is inserted), and before any item's own error."""
    item = _body()
    if ids == "stored":
        _results(await _post_batch(client, (await create_patient(client))["id"], [item]))
    invalid = _body() | {"value": 11}

    response = await _post_batch(client, str(uuid.uuid4()), [item, invalid], general=general)

    assert_problem(response, 404)
    assert await _stored(engine, item["id"]) == (1 if ids == "stored" else 0)
    assert await _stored(engine, invalid["id"]) == 0
    rows = await _audit(engine, response.headers["x-request-id"])
    assert [(row["status"], row["outcome"]) for row in rows] == [(404, "allowed")]


async def test_an_unknown_patients_batch_of_invalid_items_only_is_404(
    client: httpx.AsyncClient,
) -> None:
    response = await _post_batch(client, str(uuid.uuid4()), [_body() | {"value": 11}])
    assert_problem(response, 404)


@pytest.mark.parametrize("general", [False, True], ids=["plain", "keyed"])
async def test_a_batch_that_steps_a_course_down_applies_the_change_once(
    client: httpx.AsyncClient, engine: AsyncEngine, general: bool
) -> None:
    """The scenario of a responder (tests/analytics/test_policy_scenarios.py), its scores in one
    batch; replayed, the batch stores nothing new and changes nothing."""
    case = await scenario(client, engine)
    batch = [_body() | {"value": value, "recorded_at": ago(days=days)} for days, value in RESPONDER]

    first = await _post_batch(client, case.patient_id, batch, general=general)
    again = await _post_batch(client, case.patient_id, batch, general=general)

    assert {r["status"] for r in _results(first)} == {"created"}
    assert {r["status"] for r in _results(again)} == {"duplicate"}
    await assert_frequency(client, case, 2, "consolidation")
    rows = await history(client, case)
    assert [(r["source"], r["rule"], r["sessions_per_week"], r["phase"]) for r in rows] == [
        ("initial", None, 3, "induction"),
        ("policy", "response-step-down", 2, "consolidation"),
    ]
    assert rows[-1]["changed_at"] == (await get_course(client, case))["updated_at"]


async def test_concurrent_batches_apply_a_step_down_once(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL both batches are inserted, each reading the course (at 2 a week) with its
    INSERT, before either decides: both decide the same step, and the compare-and-set lets one
    apply it (the other's UPDATE waits for that commit, then matches nothing). SQLite runs them
    one after the other (the second then finds nothing to change)."""
    case = await scenario(client, engine, values=RESPONDER)
    await backdate(engine, case, "policy", moment(SEVEN_DAYS + timedelta(seconds=5)))
    apply = pg_store.PgUnit.apply
    both_stored = asyncio.Barrier(2)

    async def apply_together(*args: Any) -> int:
        async with asyncio.timeout(5):
            await both_stored.wait()
        return await apply(*args)

    monkeypatch.setattr(pg_store.PgUnit, "apply", apply_together)

    responses = await asyncio.gather(
        *(
            _post_batch(
                client, case.patient_id, [_body() | {"value": 4, "recorded_at": ago(seconds=s)}]
            )
            for s in (1, 2)
        )
    )

    assert [[r["status"] for r in _results(response)] for response in responses] == [
        ["created"],
        ["created"],
    ]
    await assert_stepped_down_once(client, case)


@pytest.mark.postgres_only
async def test_the_plain_pool_has_the_statement_timeout(settings: Settings) -> None:
    async with running(settings) as app, _raw_pool(app).acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "5s"


@pytest.mark.postgres_only
@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
async def test_a_recording_cancelled_by_the_statement_timeout_is_a_503_and_stores_nothing(
    settings: Settings,
    engine: AsyncEngine,
    issue_token: Issue,
    monkeypatch: pytest.MonkeyPatch,
    batch: bool,
) -> None:
    """A single POST's policy read is cancelled, before its write; a batch's INSERT, after its
    read in its transaction: nothing is kept."""
    token = await issue_token("clinician")
    async with running(settings, db_statement_timeout_ms=50) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        await create_course(c, patient["id"])  # the read sleeps once per course row
        statement = pg_store._INSERT_BATCH if batch else pg_store._PATIENT_INPUTS
        if batch:  # its last column: the statement then sleeps once its INSERT is done
            slow = statement.sql + ", pg_sleep(1)"
        else:
            slow = statement.sql.replace(
                "ORDER BY courses.start_date",
                "ORDER BY (SELECT 1 FROM pg_sleep(1)), courses.start_date",
            )
        assert slow != statement.sql
        monkeypatch.setattr(statement, "sql", slow)
        body = _body()
        if batch:
            response = await _post_batch(c, patient["id"], [body])
        else:
            response = await c.post(f"{API}/patients/{patient['id']}/observations", json=body)

    problem = assert_problem(response, 503)
    assert problem["type"].endswith("query-timeout")
    assert response.headers["retry-after"] == "1"
    assert await _stored(engine, body["id"]) == 0
    assert await audit_rows(engine, response.headers["x-request-id"]) == 1


@pytest.mark.postgres_only
async def test_recordings_and_trend_reads_take_no_connection_from_sqlalchemys_pool(
    settings: Settings, issue_token: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their statements run on the plain pool; the session each request is given stays unused,
    and is neither committed nor closed (it holds nothing; the calls cost ~0.2 ms)."""
    ended: list[str] = []
    for name in ("commit", "close"):
        method = getattr(AsyncSession, name)

        async def counted(self: AsyncSession, _name: str = name, _method: Any = method) -> None:
            ended.append(_name)
            await _method(self)

        monkeypatch.setattr(AsyncSession, name, counted)
    token = await issue_token("clinician")
    async with running(settings) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        await create_course(c, patient["id"])
        url = f"{API}/patients/{patient['id']}"
        checkouts: list[object] = []

        def checked_out(*args: object) -> None:
            checkouts.append(args)

        pool = app_state(app).engine.sync_engine.pool
        event.listen(pool, "checkout", checked_out)
        ended.clear()  # the set-up's requests' sessions
        try:
            one = await c.post(f"{url}/observations", json=_body())
            batch = await _post_batch(c, patient["id"], [_body(), _body()])
            trends = await c.get(f"{url}/trends")
            assert (checkouts, ended) == ([], [])
            listed = await c.get(f"{url}/observations")  # a session read, for contrast
            assert (len(checkouts), ended) == (1, ["commit", "close"])
        finally:
            event.remove(pool, "checkout", checked_out)
    assert (one.status_code, batch.status_code, trends.status_code) == (201, 200, 200)
    assert listed.json()["items"][0]["id"] == one.json()["id"]


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
        async with _raw_pool(app).acquire() as conn:
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
    """A pool of one connection, open or closed, that fails as a test says (for
    pg.connection's mapping)."""

    def __init__(self, closed: bool = True) -> None:
        self.terminated = False
        self.closed = closed

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Pool]:
        yield self

    def terminate(self) -> None:
        self.terminated = True

    def is_closed(self) -> bool:
        return self.closed


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


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ForeignKeyViolationError("insert violates foreign key"),
        asyncpg.InterfaceError("the server expects 23 arguments for this query, 21 were passed"),
    ],
    ids=["constraint", "misuse"],
)
async def test_the_plain_pool_lets_other_database_errors_through(error: Exception) -> None:
    """Not a 503: a retry would fail the same way."""
    with pytest.raises(type(error)):
        async with pg.connection(_Pool(closed=False)):
            raise error
