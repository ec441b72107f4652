"""Migration 0006 attributes the observations stored before attribution existed, by the
recording pipeline's own rule: to the one course they fit, else to none. On both databases,
from rows written as version 0005 would have written them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import to_async_url
from app.core.db import table_of
from app.courses.models import Course
from app.observations.models import Observation
from app.patients.models import Patient
from tests.migrations.support import course_row, drop_scratch, scratch_database
from tests.support import migrate

NOW = datetime.now(UTC)
PATIENTS, COURSES, OBSERVATIONS = table_of(Patient), table_of(Course), table_of(Observation)


async def test_observations_without_a_course_get_the_one_they_fit(
    database_url: str, tmp_path: object
) -> None:
    scratch, admin = await scratch_database(database_url, str(tmp_path))
    patient, lumbar, cervical, old = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    today = NOW.date()
    observations = {
        "odi": ("odi", 40.0, NOW - timedelta(days=1)),  # lumbar only
        "ndi": ("ndi", 30.0, NOW - timedelta(days=1)),  # cervical only
        "pain": ("pain-nrs", 5.0, NOW - timedelta(days=1)),  # both: stays without a course
        "early": ("pain-nrs", 6.0, NOW - timedelta(days=200)),  # no window: none
        "after_end": ("odi", 30.0, NOW - timedelta(days=1)),  # old course ended 2 days ago
        "in_old": ("odi", 50.0, NOW - timedelta(days=60)),  # only the old, ended course
    }
    ids = {name: uuid.uuid4() for name in observations}
    engine = create_async_engine(to_async_url(scratch))
    try:
        await asyncio.to_thread(migrate, scratch, "0005")
        async with engine.begin() as conn:
            # Through the tables' own column types (UUIDs, UTC timestamps on SQLite), naming
            # only the columns version 0005 has.
            await conn.execute(
                insert(PATIENTS).values(id=patient, name="A", created_at=NOW, updated_at=NOW)
            )
            for course in (
                course_row(lumbar, patient, "lumbar", today - timedelta(days=10), "active"),
                course_row(cervical, patient, "Neck (C5-C6)", today - timedelta(days=10), "active"),
                course_row(old, patient, "low back", today - timedelta(days=70), "completed"),
            ):
                await conn.execute(insert(COURSES).values(**course))
            for name, (instrument, value, recorded_at) in observations.items():
                await conn.execute(
                    insert(OBSERVATIONS).values(
                        id=ids[name], patient_id=patient, instrument=instrument, value=value,
                        recorded_at=recorded_at, received_at=NOW,
                    )
                )  # fmt: skip
        await asyncio.to_thread(migrate, scratch, "head")
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, course_id FROM observations"))
            stored = {_uuid(row[0]): _uuid(row[1]) for row in rows}
            ended = await conn.execute(
                text("SELECT ended_at FROM courses WHERE status = 'completed'")
            )
            assert ended.scalar_one() is not None
    finally:
        await engine.dispose()
        await drop_scratch(scratch, admin)

    assert {name: stored[ids[name]] for name in observations} == {
        "odi": lumbar,
        "ndi": cervical,
        "pain": None,
        "early": None,
        "after_end": lumbar,
        "in_old": old,
    }


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
