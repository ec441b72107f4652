"""Migration 0007: sessions a week becomes a whole number from 1 to 7 in courses and in their
frequency history. The fractions stored before are rounded to the nearest whole number
(halves away from zero) and kept within 1..7, identically on both databases; the downgrade
keeps the whole numbers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

from sqlalchemy import Float, bindparam, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import to_async_url
from app.core.db import table_of
from app.courses.frequency import SESSIONS_PER_WEEK_CHECK
from app.courses.models import Course, FrequencyChange
from app.patients.models import Patient
from tests.migrations.support import drop_scratch, scratch_database
from tests.support import ROOT, migrate

NOW = datetime.now(UTC)
# Stored as version 0006 accepted them → what 0007 makes of them.
CONVERSIONS = {0.3: 1, 0.5: 1, 1.0: 1, 1.5: 2, 2.4999: 2, 2.5: 3, 3.0: 3, 6.6: 7, 7.0: 7}


async def _frequencies(url: str, table: str) -> dict[float, object]:
    """Each row's frequency, keyed by the value it was stored with (in its label). A new
    engine each time: a column's new type invalidates statements prepared before."""
    engine = create_async_engine(to_async_url(url))
    try:
        async with engine.connect() as conn:
            label = "indication" if table == "courses" else "reason"
            rows = await conn.execute(text(f"SELECT {label}, sessions_per_week FROM {table}"))  # noqa: S608
            return {float(row[0]): row[1] for row in rows}
    finally:
        await engine.dispose()


async def test_stored_fractions_become_the_nearest_whole_number_within_1_to_7(
    database_url: str, tmp_path: object
) -> None:
    scratch, admin = await scratch_database(database_url, str(tmp_path))
    engine = create_async_engine(to_async_url(scratch))
    patient = uuid.uuid4()
    try:
        await asyncio.to_thread(migrate, scratch, "0006")
        async with engine.begin() as conn:
            await conn.execute(
                insert(table_of(Patient)).values(id=patient, created_at=NOW, updated_at=NOW)
            )
            for stored in CONVERSIONS:
                course = uuid.uuid4()
                await conn.execute(
                    insert(table_of(Course)).values(
                        id=course, patient_id=patient, indication=str(stored), region="lumbar",
                        technique="paravertebral", start_date=date(2026, 1, 1),
                        sessions_per_week=3, adjustment="auto", status="active",
                        phase="induction", sessions_done=0, policy="standard-v2",
                        created_at=NOW, updated_at=NOW,
                    )
                )  # fmt: skip
                await conn.execute(
                    insert(table_of(FrequencyChange)).values(
                        id=uuid.uuid4(), course_id=course, sessions_per_week=3,
                        phase="induction", changed_at=NOW, source="initial", reason=str(stored),
                    )
                )  # fmt: skip
            # The fraction as version 0006's REAL / double precision column takes it (the
            # models' INTEGER type would cast it on the way).
            for table, label in (("courses", "indication"), ("frequency_changes", "reason")):
                await conn.execute(
                    text(
                        f"UPDATE {table} SET sessions_per_week = :value WHERE {label} = :label"  # noqa: S608
                    ).bindparams(bindparam("value", type_=Float)),
                    [{"value": stored, "label": str(stored)} for stored in CONVERSIONS],
                )

        await asyncio.to_thread(migrate, scratch, "0007")
        upgraded = {t: await _frequencies(scratch, t) for t in ("courses", "frequency_changes")}
        await asyncio.to_thread(migrate, scratch, "0006", down=True)
        downgraded = await _frequencies(scratch, "courses")
        await asyncio.to_thread(migrate, scratch, "0007")
        again = await _frequencies(scratch, "courses")
    finally:
        await engine.dispose()
        await drop_scratch(scratch, admin)

    for table, values in upgraded.items():
        assert values == CONVERSIONS, table
        assert all(type(value) is int for value in values.values()), table
    assert downgraded == {stored: float(whole) for stored, whole in CONVERSIONS.items()}
    assert again == CONVERSIONS


def test_the_columns_check_in_migrations_is_the_rule() -> None:
    """A change to the rule (app/courses/frequency.py) must ship with a migration."""
    source = ROOT / "migrations/versions/20261210_0007_sessions_per_week_is_a_whole_number.py"
    assert SESSIONS_PER_WEEK_CHECK in source.read_text()
