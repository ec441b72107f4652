"""The RecordingStore contract, run against every store on the database under test: the
session store everywhere, the PostgreSQL store on PostgreSQL. Each case says what any store
must do, whatever SQL it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.analytics.repository import Value, value_order
from app.auth.rules import API, RULES, AccessRecord
from app.core.db import new_id, utcnow
from app.core.state import app_state
from app.courses.models import FrequencyChange
from app.observations.models import Observation
from app.patients.errors import PatientNotFound
from app.recording.pg_store import PgStore
from app.recording.session_store import SessionStore
from app.recording.store import PlannedChange, RecordingUnit
from tests.factories import create_course, create_patient, create_session

STORES = ["session", pytest.param("pg", marks=pytest.mark.postgres_only)]
_POST = RULES[("POST", f"{API}/patients/{{patient_id}}/observations")]


def _access(patient_id: uuid.UUID) -> AccessRecord:
    return AccessRecord(
        rule=_POST,
        request_id=uuid.uuid4().hex,
        patient_id=patient_id,
        resource_id=str(patient_id),
        outcome="allowed",
    )


@asynccontextmanager
async def unit_of(
    app: Any,
    kind: str,
    *,
    access: AccessRecord | None = None,
    transaction: bool = False,
) -> AsyncIterator[RecordingUnit]:
    """A unit of the store ``kind``; the session store's in a transaction of its own that
    commits at the end, as a request's would."""
    now = utcnow()
    if kind == "pg":
        access = access or _access(uuid.uuid4())
        async with PgStore(app_state(app).raw_pool, access, now).unit(
            transaction=transaction
        ) as db:
            yield db
        return
    async with (
        app_state(app).sessionmaker() as session,
        session.begin(),
        SessionStore(session, now).unit(transaction=transaction) as db,
    ):
        yield db


def _row(patient_id: uuid.UUID, value: float = 5, **fields: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "patient_id": patient_id,
        "instrument": "pain-nrs",
        "value": value,
        "recorded_at": utcnow() - timedelta(minutes=1),
        "received_at": utcnow(),
        "course_id": None,
        "session_id": None,
        "context": None,
        "source": None,
        "note": None,
    } | fields


async def _count(engine: AsyncEngine, stmt: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def _observations(engine: AsyncEngine, patient_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(Observation.patient_id == patient_id)
    return await _count(engine, stmt)


async def _audit_rows(engine: AsyncEngine, request_id: str) -> int:
    stmt = text("SELECT count(*) FROM audit_events WHERE request_id = :rid")
    async with engine.connect() as conn:
        return int((await conn.execute(stmt, {"rid": request_id})).scalar_one())


@pytest.mark.parametrize("kind", STORES)
async def test_a_taken_id_is_not_stored_again(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine, kind: str
) -> None:
    patient_id = uuid.UUID((await create_patient(client))["id"])
    row = _row(patient_id)
    async with unit_of(app, kind) as db:
        assert await db.write_one(row, []) is True
    async with unit_of(app, kind) as db:
        assert await db.write_one(row | {"value": 9}, []) is False
        stored = await db.stored([row["id"], new_id()])
    assert list(stored) == [row["id"]]
    assert stored[row["id"]]["value"] == 5  # the first write's
    assert await _observations(engine, patient_id) == 1


@pytest.mark.parametrize("kind", STORES)
async def test_an_unknown_patient_is_not_found_and_nothing_is_written(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine, kind: str
) -> None:
    unknown = uuid.uuid4()
    access = _access(unknown)
    with pytest.raises(PatientNotFound):
        async with unit_of(app, kind, access=access) as db:
            await db.write_one(_row(unknown), [])
    with pytest.raises(PatientNotFound):
        async with unit_of(app, kind, access=access, transaction=True) as db:
            await db.write_batch(unknown, utcnow(), [_row(unknown)])
    async with unit_of(app, kind) as db:
        assert await db.patient_exists(unknown) is False
    assert await _observations(engine, unknown) == 0
    assert await _audit_rows(engine, access.request_id) == 0
    assert access.written is False


@pytest.mark.postgres_only
async def test_the_pg_store_writes_the_audit_row_only_with_a_stored_observation(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The plain pool has no request transaction: the row is part of the write."""
    patient_id = uuid.UUID((await create_patient(client))["id"])
    row = _row(patient_id)
    stored, taken = _access(patient_id), _access(patient_id)
    async with unit_of(app, "pg", access=stored) as db:
        assert await db.write_one(row, []) is True
    async with unit_of(app, "pg", access=taken) as db:
        assert await db.write_one(row, []) is False
    assert (stored.written, await _audit_rows(engine, stored.request_id)) == (True, 1)
    assert (taken.written, await _audit_rows(engine, taken.request_id)) == (False, 0)


async def test_the_session_store_leaves_the_audit_row_to_the_requests_transaction(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Its writes are the request's transaction, whose commit hook writes the row with them."""
    patient_id = uuid.UUID((await create_patient(client))["id"])
    access = _access(patient_id)
    async with unit_of(app, "session", access=access) as db:
        assert await db.write_one(_row(patient_id), []) is True
    assert (access.written, await _audit_rows(engine, access.request_id)) == (False, 0)


async def _history(engine: AsyncEngine, course_id: uuid.UUID) -> list[tuple[str, float]]:
    stmt = (
        select(FrequencyChange.source, FrequencyChange.sessions_per_week)
        .where(FrequencyChange.course_id == course_id)
        .order_by(FrequencyChange.changed_at, FrequencyChange.id)
    )
    async with engine.connect() as conn:
        return [(source, spw) for source, spw in await conn.execute(stmt)]


def _step_down(course_id: uuid.UUID) -> PlannedChange:
    values = {
        "sessions_per_week": 2,
        "phase": "consolidation",
        "source": "policy",
        "rule": "response-step-down",
        "reason": "contract test",
    }
    return PlannedChange(new_id(), course_id, 3.0, values)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", STORES)
async def test_two_concurrent_compare_and_sets_apply_once(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine, kind: str
) -> None:
    patient = await create_patient(client)
    course_id = uuid.UUID((await create_course(client, patient["id"]))["id"])

    async def apply() -> int:
        async with unit_of(app, kind, transaction=True) as db:
            return await db.apply([_step_down(course_id)])

    assert sorted(await asyncio.gather(apply(), apply())) == [0, 1]
    assert await _history(engine, course_id) == [("initial", 3.0), ("policy", 2.0)]
    async with unit_of(app, kind) as db:  # and once it moved on, the same plan is stale
        assert await db.apply([_step_down(course_id)]) == 0


@pytest.mark.parametrize("kind", STORES)
async def test_a_change_is_applied_only_with_a_stored_observation(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine, kind: str
) -> None:
    patient = await create_patient(client)
    course_id = uuid.UUID((await create_course(client, patient["id"]))["id"])
    row = _row(uuid.UUID(patient["id"]))
    async with unit_of(app, kind) as db:
        assert await db.write_one(row, []) is True
    async with unit_of(app, kind) as db:  # a replay decides nothing
        assert await db.write_one(row, [_step_down(course_id)]) is False
    assert await _history(engine, course_id) == [("initial", 3.0)]
    async with unit_of(app, kind) as db:
        assert await db.write_one(_row(row["patient_id"]), [_step_down(course_id)]) is True
    assert await _history(engine, course_id) == [("initial", 3.0), ("policy", 2.0)]


async def _seed(client: httpx.AsyncClient) -> tuple[uuid.UUID, list[uuid.UUID], list[Value]]:
    """A patient with two active lumbar courses (sessions, an adverse event) and values around
    their windows: two attributed to the older course (only its window holds them), one before
    both windows, and four naming the newer course, three of them at one moment (a tie the
    order must settle by id). The courses ask a clinician to confirm, so the values change
    nothing."""
    patient = await create_patient(client)
    today = datetime.now(UTC).date()
    old = await create_course(
        client,
        patient["id"],
        start_date=(today - timedelta(days=30)).isoformat(),
        adjustment="confirm",
    )
    new = await create_course(
        client,
        patient["id"],
        start_date=(today - timedelta(days=10)).isoformat(),
        adjustment="confirm",
    )
    await create_session(client, old["id"], performed_at=_iso(days=29))
    await create_session(client, new["id"], performed_at=_iso(days=9), adverse_events=["pain"])
    tie = _iso(days=5)
    posted: list[tuple[str, float, str | None]] = [
        (_iso(days=60), 9.0, None),
        (_iso(days=43), 8.0, None),
        (_iso(days=40), 7.0, None),
        (tie, 6.0, new["id"]),
        (tie, 5.0, new["id"]),
        (tie, 4.0, new["id"]),
        (_iso(days=1), 3.0, new["id"]),
    ]
    values: list[Value] = []
    for recorded_at, value, course_id in posted:
        body = {"instrument": "pain-nrs", "value": value, "recorded_at": recorded_at}
        if course_id is not None:
            body["course_id"] = course_id
        response = await client.post(f"/api/v1/patients/{patient['id']}/observations", json=body)
        assert response.status_code == 201, response.text
        stored = response.json()
        owner = uuid.UUID(stored["course_id"]) if stored["course_id"] else None
        recorded = datetime.fromisoformat(stored["recorded_at"])
        values.append(("pain-nrs", recorded, uuid.UUID(stored["id"]), value, owner, 1))
    assert [v[4] for v in values[:3]] == [None, uuid.UUID(old["id"]), uuid.UUID(old["id"])]
    # The widest window starts 14 days before the earliest start date (30 days ago).
    since = datetime.combine(today - timedelta(days=44), datetime.min.time(), tzinfo=UTC)
    expected = sorted((v for v in values if v[1] >= since), key=value_order)
    return uuid.UUID(patient["id"]), [uuid.UUID(new["id"]), uuid.UUID(old["id"])], expected


def _iso(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


@pytest.mark.parametrize("kind", STORES)
async def test_policy_inputs_are_the_same_on_every_store(
    app: Any, client: httpx.AsyncClient, kind: str
) -> None:
    patient_id, course_ids, expected = await _seed(client)
    new, old = course_ids
    async with unit_of(app, kind) as db:
        inputs = await db.policy_inputs(patient_id)
        named = await db.policy_inputs(patient_id, old)
        trend = await db.trend_inputs(patient_id, None)

    assert [course.id for course, _ in inputs.courses] == course_ids  # newest first
    assert inputs.values == expected
    newest, facts = inputs.courses[0]
    assert (newest.sessions_per_week, newest.status, newest.policy) == (
        3.0,
        "active",
        "standard-v2",
    )
    assert facts.last_change_source == "initial"
    assert facts.latest_adverse_events == ("pain",)
    assert facts.unacknowledged_adverse_events == ("pain",)
    assert facts.first_session_at is not None
    assert [course.id for course, _ in named.courses] == [old]
    assert named.values == [v for v in expected if v[4] in (None, old)]
    assert trend is not None
    assert trend.course.id == new  # the newest active course
    assert trend.values == [v for v in expected if v[4] in (None, new) and v[1] >= _window(10)]
    assert trend.first_session_at == facts.first_session_at


def _window(days_before_today: int) -> datetime:
    start = datetime.now(UTC).date() - timedelta(days=days_before_today + 14)
    return datetime.combine(start, datetime.min.time(), tzinfo=UTC)


@pytest.mark.parametrize("kind", STORES)
async def test_a_batch_is_stored_unless_its_ids_are_taken(
    app: Any, client: httpx.AsyncClient, engine: AsyncEngine, kind: str
) -> None:
    patient_id = uuid.UUID((await create_patient(client))["id"])
    first, second = (
        {k: v for k, v in _row(patient_id).items() if k not in ("patient_id", "received_at")}
        for _ in range(2)
    )
    async with unit_of(app, kind, transaction=True) as db:
        assert await db.write_batch(patient_id, utcnow(), [first]) == {first["id"]}
    async with unit_of(app, kind, transaction=True) as db:
        assert await db.write_batch(patient_id, utcnow(), [first, second]) == {second["id"]}
    assert await _observations(engine, patient_id) == 2
