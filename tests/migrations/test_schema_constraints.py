"""Constraints live in the database too: writes that bypass the API are still refused."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.courses.frequency import ALLOWED_SESSIONS_PER_WEEK
from app.courses.models import Course, FrequencyChange
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession

NOW = datetime.now(UTC)


def _course(owner: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(), "patient_id": owner, "indication": "spondylosis", "region": "lumbar",
        "technique": "paravertebral", "start_date": date(2026, 1, 1), "sessions_per_week": 3,
        "adjustment": "auto", "status": "active", "phase": "induction", "sessions_done": 0,
        "created_at": NOW, "updated_at": NOW,
    } | overrides  # fmt: skip


async def _patient(engine: AsyncEngine) -> uuid.UUID:
    patient_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(insert(Patient).values(id=patient_id, created_at=NOW, updated_at=NOW))
    return patient_id


@pytest.mark.parametrize(
    "overrides",
    [
        {"sessions_per_week": 0},
        {"sessions_per_week": 8},
        {"technique": "oral"},
        {"status": "archived"},
        {"phase": "taper"},
        {"adjustment": "manual"},
        {"sessions_done": -1},
        {"max_sessions": 0},
        {"patient_id": uuid.uuid4()},  # foreign key
        {"indication": None},  # NOT NULL
    ],
)
async def test_course_constraints(engine: AsyncEngine, overrides: dict[str, Any]) -> None:
    patient_id = await _patient(engine)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(Course).values(**_course(patient_id, **overrides)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"ozone_concentration_ug_ml": 0.5},
        {"ozone_concentration_ug_ml": 81.0},
        {"volume_ml": 51.0},
        {"injection_points": 0},
        {"pain_before": 11},
        {"pain_after": -1},
        {"number": 0},
    ],
)
async def test_session_constraints(engine: AsyncEngine, overrides: dict[str, Any]) -> None:
    patient_id = await _patient(engine)
    course = _course(patient_id)
    async with engine.begin() as conn:
        await conn.execute(insert(Course).values(**course))
    row = {
        "id": uuid.uuid4(), "course_id": course["id"], "patient_id": patient_id, "number": 1,
        "performed_at": NOW, "sites": [], "adverse_events": [], "created_at": NOW,
    } | overrides  # fmt: skip
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(TreatmentSession).values(**row))


async def test_session_numbers_are_unique_within_a_course(engine: AsyncEngine) -> None:
    patient_id = await _patient(engine)
    course = _course(patient_id)
    base = {"course_id": course["id"], "patient_id": patient_id, "number": 1, "performed_at": NOW,
            "sites": [], "adverse_events": [], "created_at": NOW}  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(Course).values(**course))
        await conn.execute(insert(TreatmentSession).values(id=uuid.uuid4(), **base))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(TreatmentSession).values(id=uuid.uuid4(), **base))


async def test_patient_sex_is_checked(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                insert(Patient).values(id=uuid.uuid4(), sex="x", created_at=NOW, updated_at=NOW)
            )


@pytest.mark.parametrize("table", [Course, FrequencyChange])
async def test_sessions_per_week_is_only_ever_a_whole_number_from_1_to_7(
    engine: AsyncEngine, table: type[Course] | type[FrequencyChange]
) -> None:
    """Whatever writes the row: 0 and 8 are refused, and so is 2.5 on SQLite (which would
    keep it in an INTEGER column: its CHECK names the allowed values); asyncpg truncates it
    to a whole number before PostgreSQL sees it. Only integers from 1 to 7 are ever read."""
    patient_id = await _patient(engine)
    course = _course(patient_id)
    async with engine.begin() as conn:
        await conn.execute(insert(Course).values(**course))

    def row(sessions_per_week: object) -> dict[str, Any]:
        if table is Course:
            return _course(patient_id, sessions_per_week=sessions_per_week)
        return {"id": uuid.uuid4(), "course_id": course["id"], "phase": "induction",
                "changed_at": NOW, "source": "clinician", "reason": "r",
                "sessions_per_week": sessions_per_week}  # fmt: skip

    for refused in (0, 8):
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(insert(table).values(**row(refused)))
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(table).values(**row(2.5)))
    except IntegrityError:
        assert engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        for allowed in ALLOWED_SESSIONS_PER_WEEK:
            await conn.execute(insert(table).values(**row(allowed)))
        stored = (await conn.execute(select(table.sessions_per_week))).scalars().all()
    assert set(stored) == set(ALLOWED_SESSIONS_PER_WEEK)
    assert all(type(value) is int for value in stored)
