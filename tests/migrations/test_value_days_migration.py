"""Migration 0011 marks every day that already holds values stale (a value's own day, a
session's pain_before day), so the service computes them; on both databases, from rows
written as version 0010 would have written them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.analytics.days import recompute_settled
from app.analytics.models import NO_COURSE
from app.analytics.repository import DAYS, OBSERVATIONS, STALE
from app.core.config import to_async_url
from app.core.db import table_of
from app.courses.models import Course
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession
from tests.migrations.support import course_row, drop_scratch, scratch_database
from tests.support import migrate

NOW = datetime.now(UTC).replace(hour=12)
PATIENTS, SESSIONS = table_of(Patient), table_of(TreatmentSession)
COURSES = table_of(Course)


async def test_days_that_hold_values_start_stale_and_are_computed(
    database_url: str, tmp_path: object
) -> None:
    scratch, admin = await scratch_database(database_url, str(tmp_path))
    patient, course, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    yesterday, earlier = NOW - timedelta(days=1), NOW - timedelta(days=3)
    engine = create_async_engine(to_async_url(scratch))
    try:
        await asyncio.to_thread(migrate, scratch, "0010")
        async with engine.begin() as conn:
            await conn.execute(
                insert(PATIENTS).values(id=patient, name="A", created_at=NOW, updated_at=NOW)
            )
            start = (NOW - timedelta(days=5)).date()
            await conn.execute(
                insert(COURSES).values(**course_row(course, patient, "lumbar", start, "active"))
            )
            await conn.execute(
                insert(SESSIONS).values(
                    id=session, course_id=course, patient_id=patient, number=1,
                    performed_at=earlier, pain_before=8, adverse_events=[], created_at=NOW,
                )
            )  # fmt: skip
            for value, owner in ((4.0, course), (6.0, course), (5.0, None)):
                await conn.execute(
                    insert(OBSERVATIONS).values(
                        id=uuid.uuid4(), patient_id=patient, instrument="pain-nrs", value=value,
                        recorded_at=yesterday, received_at=NOW, course_id=owner,
                    )
                )  # fmt: skip
        await asyncio.to_thread(migrate, scratch, "head")
        async with engine.connect() as conn:
            marked = {
                (row.day, row.course_key)
                for row in await conn.execute(select(STALE.c.day, STALE.c.course_key))
            }
        assert marked == {
            (yesterday.date(), course),
            (yesterday.date(), NO_COURSE),
            (earlier.date(), course),  # the session's pain_before
        }
        sessionmaker = async_sessionmaker(engine)
        assert await recompute_settled(sessionmaker, settle_seconds=0) == 3
        async with engine.connect() as conn:
            days = {
                (row.day, row.course_key): (row.n, row.value)
                for row in await conn.execute(select(DAYS))
            }
        assert days == {
            (yesterday.date(), course): (2, 5.0),
            (yesterday.date(), NO_COURSE): (1, 5.0),
            (earlier.date(), course): (1, 8.0),
        }
    finally:
        await engine.dispose()
        await drop_scratch(scratch, admin)
