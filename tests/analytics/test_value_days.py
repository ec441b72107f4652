"""Bounded cost (docs/analytics.md): a course's trends read one row a day from ``value_days``
wherever that gives the same trends, and the trends are exactly those of every value read as
it is, whatever has been recomputed, on both databases.

The reference is the plain read (``repository.values_of``: every value of the window); the
reduced read is the one the recording pipeline and the trend reads use. Patients are drawn at
random (seeded): one or two courses, values with and without a course on the same days,
sessions with a pain_before (some named by an observation), values recorded after "now",
days above and below 100 values, and any part of the stale days recomputed.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.analytics import repository as reads
from app.analytics.days import lock_day, recompute, recompute_settled
from app.analytics.repository import (
    COURSES,
    DAYS,
    OBSERVATIONS,
    STALE,
    PolicyInputs,
    Value,
    read_inputs,
    value_order,
    values_of,
    window_days,
)
from app.analytics.service import course_trends, group_points, policy_of
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.main import create_app
from tests.factories import API, create_course, create_patient
from tests.support import Issue, serving

TODAY = datetime.now(UTC).date()
NOW = datetime.combine(TODAY, time(12), tzinfo=UTC)
_ACTIVE = select(COURSES.c.id, COURSES.c.start_date).where(
    COURSES.c.patient_id == bindparam("patient_id"), COURSES.c.status == "active"
)
RAW_VALUES = values_of(_ACTIVE.subquery())


async def _raw(session: AsyncSession, patient_id: uuid.UUID) -> list[Value]:
    params = {"patient_id": patient_id, "window_days": window_days()}
    return [tuple(r) for r in await session.execute(RAW_VALUES, params)]


async def _reduced(
    session: AsyncSession, patient_id: uuid.UUID, new: list[tuple[str, datetime]]
) -> PolicyInputs:
    params = {"patient_id": patient_id}
    return await read_inputs(session, reads.PATIENT_COURSES, reads.ACTIVE_VALUES, params, NOW, new)


def _trends(inputs: PolicyInputs, values: list[Value]) -> dict[uuid.UUID, str]:
    """Each active course's trends, as text (NaN equals NaN)."""
    out = {}
    for course, facts in inputs.courses:
        if course.status != "active":
            continue
        points = group_points(values, course.id)
        found = course_trends(course, points, facts.first_session_at, NOW, policy_of(course))
        out[course.id] = repr(found)
    return out


async def _patient(client: httpx.AsyncClient, rng: random.Random) -> dict[str, Any]:
    """A patient with a lumbar course (and maybe a cervical one) and their sessions."""
    patient = await create_patient(client)
    start = TODAY - timedelta(days=rng.randint(4, 12))
    courses = [
        await create_course(
            client, patient["id"], start_date=start.isoformat(), adjustment="confirm"
        )
    ]
    if rng.random() < 0.5:
        cervical = TODAY - timedelta(days=rng.randint(2, 10))
        courses.append(
            await create_course(
                client,
                patient["id"],
                region="cervical",
                indication="cervical spondylosis",
                start_date=cervical.isoformat(),
                adjustment="confirm",
            )
        )
    sessions = []
    for course in courses:
        for k in range(rng.randint(0, 3)):
            at = datetime.combine(date.fromisoformat(course["start_date"]), time(9), tzinfo=UTC)
            at += timedelta(days=k, minutes=rng.randint(0, 600))
            body: dict[str, Any] = {"performed_at": at.isoformat()}
            if rng.random() < 0.8:
                body["pain_before"] = rng.randint(3, 9)
            response = await client.post(f"{API}/courses/{course['id']}/sessions", json=body)
            assert response.status_code == 201, response.text
            sessions.append(response.json())
    return {"patient": patient, "courses": courses, "sessions": sessions, "start": start}


def _observations(drawn: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """Many values on some days, few on others; with and without a course; a few after now;
    some naming a session."""
    patient_id = uuid.UUID(drawn["patient"]["id"])
    courses = [uuid.UUID(c["id"]) for c in drawn["courses"]]
    first = drawn["start"] - timedelta(days=rng.randint(0, 16))
    rows = []
    day = first
    while day <= TODAY:
        count = rng.choice([0, 0, 1, 2, 5, 20, 45])
        for _ in range(count):
            at = datetime.combine(day, time(), tzinfo=UTC) + timedelta(
                seconds=rng.randint(0, 86399), microseconds=rng.randint(0, 999_999)
            )
            if day == TODAY and rng.random() < 0.3:
                at = NOW + timedelta(minutes=rng.randint(0, 4))  # after "now"
            instrument = rng.choice(["pain-nrs", "pain-nrs", "pain-nrs", "odi"])
            owner = rng.choice([None, *courses])
            if instrument == "odi" and owner is not None:
                owner = courses[0]  # lumbar only
            value = rng.randint(0, 10) if instrument == "pain-nrs" else rng.randint(0, 90)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "patient_id": patient_id,
                    "instrument": instrument,
                    "value": float(value),
                    "recorded_at": at,
                    "received_at": NOW,
                    "course_id": owner,
                    "session_id": None,
                }
            )
        day += timedelta(days=1)
    for session in drawn["sessions"]:
        if rng.random() < 0.3:  # a pain-nrs naming the session: its pain_before stops counting
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "patient_id": patient_id,
                    "instrument": "pain-nrs",
                    "value": 7.0,
                    "recorded_at": datetime.fromisoformat(session["performed_at"])
                    - timedelta(minutes=5),
                    "received_at": NOW,
                    "course_id": uuid.UUID(session["course_id"]),
                    "session_id": uuid.UUID(session["id"]),
                }
            )
    return rows


async def _recompute_some(session: AsyncSession, rng: random.Random, share: float) -> None:
    key = (STALE.c.patient_id, STALE.c.instrument, STALE.c.day, STALE.c.course_key)
    for day in (await session.execute(select(*key).distinct())).all():
        if rng.random() < share:
            await recompute(session, day)


@pytest.mark.parametrize("seed", range(16))
async def test_reduced_days_give_the_trends_of_every_value(
    client: httpx.AsyncClient, engine: AsyncEngine, seed: int
) -> None:
    rng = random.Random(seed)
    drawn = await _patient(client, rng)
    patient_id = uuid.UUID(drawn["patient"]["id"])
    rows = _observations(drawn, rng)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        if rows:
            await session.execute(insert(OBSERVATIONS), rows)
    for share in (0.0, 0.5, 1.0):  # nothing, part and all of the stale days recomputed
        async with sessionmaker() as session, session.begin():
            await _recompute_some(session, rng, share)
        new = [("pain-nrs", NOW - timedelta(minutes=rng.randint(1, 3000)))]
        async with sessionmaker() as session:
            reduced = await _reduced(session, patient_id, new)
            raw = await _raw(session, patient_id)
        assert sum(v[5] for v in reduced.values) == len(raw)  # every value counted once
        assert _trends(reduced, reduced.values) == _trends(reduced, raw)
        # The plan adds the value being recorded to its day, which came as its values.
        added: Value = ("pain-nrs", new[0][1], uuid.uuid4(), 5.0, None, 1)
        for values in (reduced.values, raw):
            bisect.insort(values, added, key=value_order)
        assert _trends(reduced, reduced.values) == _trends(reduced, raw)


async def test_a_course_with_thousands_of_values_reads_a_row_a_day(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    course = await create_course(client, start_date=(TODAY - timedelta(days=10)).isoformat())
    patient_id = uuid.UUID(course["patient_id"])
    session_at = datetime.combine(TODAY - timedelta(days=10), time(9), tzinfo=UTC)
    response = await client.post(
        f"{API}/courses/{course['id']}/sessions",
        json={"performed_at": session_at.isoformat(), "pain_before": 8},
    )
    assert response.status_code == 201, response.text
    rng = random.Random(1)
    rows = [
        {
            "id": uuid.uuid4(),
            "patient_id": patient_id,
            "instrument": "pain-nrs",
            "value": float(rng.randint(0, 10)),
            "recorded_at": NOW - timedelta(minutes=10 + 5 * i),
            "received_at": NOW,
            "course_id": uuid.UUID(course["id"]),
            "session_id": None,
        }
        for i in range(3000)  # 10 days and more of a device posting every 5 minutes
    ]
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(OBSERVATIONS), rows)
    while await recompute_settled(sessionmaker, settle_seconds=0):
        pass
    async with sessionmaker() as session:
        reduced = await _reduced(session, patient_id, [])
        raw = await _raw(session, patient_id)
    assert len(raw) == 3001
    assert len(reduced.values) <= 12  # a row a day (the session's day too)
    assert _trends(reduced, reduced.values) == _trends(reduced, raw)
    # The day of a value being recorded comes as its values: the plan adds the new one.
    async with sessionmaker() as session:
        recording = await _reduced(session, patient_id, [("pain-nrs", NOW)])
    today = [v for v in recording.values if v[1].date() == TODAY]
    assert today
    assert all(v[5] == 1 for v in today)


async def test_a_day_is_stale_from_the_transaction_that_changes_it_until_recomputed(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    course = await create_course(client)
    patient_id = course["patient_id"]
    at = datetime.now(UTC) - timedelta(days=2)
    for value in (6, 8, 7):
        body = {"instrument": "pain-nrs", "value": value, "recorded_at": at.isoformat()}
        response = await client.post(f"{API}/patients/{patient_id}/observations", json=body)
        assert response.status_code == 201, response.text
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        marks = await session.scalar(select(func.count()).select_from(STALE))
        assert marks == 3  # one a recording (a statement marks each of its days once)
    # Not settled yet: nothing recomputed; settled: the day's row, its marks gone.
    assert await recompute_settled(sessionmaker, settle_seconds=3600) == 0
    assert await recompute_settled(sessionmaker, settle_seconds=0) == 1
    async with sessionmaker() as session:
        row = (await session.execute(select(DAYS))).one()
        assert (row.n, row.value, row.course_key) == (3, 7.0, uuid.UUID(course["id"]))
        assert row.recorded_at == at
        assert await session.scalar(select(func.count()).select_from(STALE)) == 0
    # A change marks it again; removing every value of a day removes its row.
    async with sessionmaker() as session, session.begin():
        await session.execute(update(OBSERVATIONS).values(value=OBSERVATIONS.c.value + 1))
    async with sessionmaker() as session:
        assert (await session.scalar(select(func.count()).select_from(STALE)) or 0) >= 1
    await recompute_settled(sessionmaker, settle_seconds=0)
    async with sessionmaker() as session:
        assert (await session.execute(select(DAYS.c.value))).scalar_one() == 8.0
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(OBSERVATIONS))
    await recompute_settled(sessionmaker, settle_seconds=0)
    async with sessionmaker() as session:
        assert (await session.execute(select(DAYS))).all() == []


@pytest.mark.postgres_only
async def test_two_processes_never_recompute_one_day_at_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    course = await create_course(client)
    body = {"instrument": "pain-nrs", "value": 5, "recorded_at": datetime.now(UTC).isoformat()}
    response = await client.post(f"{API}/patients/{course['patient_id']}/observations", json=body)
    assert response.status_code == 201, response.text
    sessionmaker = create_sessionmaker(engine)
    key = (STALE.c.patient_id, STALE.c.instrument, STALE.c.day, STALE.c.course_key)
    async with sessionmaker() as first, first.begin():
        (day,) = (await first.execute(select(*key))).all()
        assert await lock_day(first, day)  # the first process is recomputing it
        # Another process passes it by: its marks stay for later, no row is written.
        assert await recompute_settled(sessionmaker, settle_seconds=0) == 1
        async with sessionmaker() as other:
            assert (await other.execute(select(DAYS))).all() == []
            assert (await other.scalar(select(func.count()).select_from(STALE))) == 1
        await recompute(first, day)
    async with sessionmaker() as session:
        assert (await session.execute(select(DAYS.c.n))).scalar_one() == 1
        assert (await session.scalar(select(func.count()).select_from(STALE))) == 0


async def test_the_service_recomputes_settled_days_by_itself(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """A served app's own background refresh (a short settle time): the day of a POST gets
    its row, and its marks go, without anyone asking."""
    token = await issue_token("clinician")
    quick = settings.model_copy(
        update={"value_days_refresh_seconds": 0.1, "value_days_settle_seconds": 0}
    )
    with serving(create_app(quick)) as base:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as api:
            course = await create_course(api)
            at = datetime.now(UTC) - timedelta(hours=1)
            for value in (3, 5):
                body = {"instrument": "pain-nrs", "value": value, "recorded_at": at.isoformat()}
                response = await api.post(
                    f"{API}/patients/{course['patient_id']}/observations", json=body
                )
                assert response.status_code == 201, response.text
            sessionmaker = create_sessionmaker(engine)
            for _ in range(100):
                async with sessionmaker() as session:
                    rows = (await session.execute(select(DAYS.c.n, DAYS.c.value))).all()
                    marks = await session.scalar(select(func.count()).select_from(STALE))
                if rows and not marks:
                    break
                await asyncio.sleep(0.1)
    assert [tuple(row) for row in rows] == [(2, 4.0)]
    assert marks == 0
