"""SQL for analytics: a course's policy inputs and the values its trends are computed from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, ScalarSelect, Uuid, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.courses.models import Course, FrequencyChange
from app.observations.models import Observation
from app.treatment_sessions.models import TreatmentSession


@dataclass(frozen=True, slots=True)
class CourseFacts:
    """What the policy needs besides the course row, fetched in one round trip."""

    last_change_source: str
    last_change_at: datetime
    first_session_at: datetime | None
    latest_adverse_events: tuple[str, ...]


class AnalyticsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_courses(self, patient_id: uuid.UUID) -> list[tuple[Course, CourseFacts]]:
        """The patient's active courses with their policy facts, in one round trip."""
        stmt = (
            select(Course, *_facts_of(Course.id))
            .where(Course.patient_id == patient_id, Course.status == "active")
            .order_by(Course.start_date.desc(), Course.created_at.desc())
        )
        return [(row[0], _facts(row[1:])) for row in (await self.session.execute(stmt)).all()]

    async def course_for_trends(self, patient_id: uuid.UUID) -> Course | None:
        """The patient's active course, else the latest one."""
        stmt = (
            select(Course)
            .where(Course.patient_id == patient_id)
            .order_by(
                (Course.status == "active").desc(),
                Course.start_date.desc(),
                Course.created_at.desc(),
            )
            .limit(1)
        )
        return await self.session.scalar(stmt)

    async def facts(self, course_id: uuid.UUID) -> CourseFacts:
        row = (await self.session.execute(select(*_facts_of(literal(course_id, Uuid))))).one()
        return _facts(row)

    async def values_since(
        self, patient_id: uuid.UUID, since: datetime, instrument: str | None = None
    ) -> Sequence[Row[str, datetime, float]]:
        stmt = select(Observation.instrument, Observation.recorded_at, Observation.value).where(
            Observation.patient_id == patient_id, Observation.recorded_at >= since
        )
        if instrument is not None:
            stmt = stmt.where(Observation.instrument == instrument)
        return (await self.session.execute(stmt.order_by(Observation.recorded_at))).all()

    async def cohort_courses(
        self,
        indication: str | None,
        technique: str | None,
        since: date | None,
        until: date | None,
    ) -> list[Course]:
        stmt = select(Course)
        if indication is not None:
            stmt = stmt.where(func.lower(Course.indication) == indication.lower())
        if technique is not None:
            stmt = stmt.where(Course.technique == technique)
        if since is not None:
            stmt = stmt.where(Course.start_date >= since)
        if until is not None:
            stmt = stmt.where(Course.start_date <= until)
        return list((await self.session.scalars(stmt.order_by(Course.start_date, Course.id))).all())

    async def first_sessions(self, course_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        stmt = (
            select(TreatmentSession.course_id, func.min(TreatmentSession.performed_at))
            .where(TreatmentSession.course_id.in_(course_ids))
            .group_by(TreatmentSession.course_id)
        )
        return {course_id: first for course_id, first in (await self.session.execute(stmt)).all()}

    async def values_of_patients(
        self, patient_ids: set[uuid.UUID], since: datetime
    ) -> Sequence[Row[uuid.UUID, str, datetime, float]]:
        stmt = select(
            Observation.patient_id,
            Observation.instrument,
            Observation.recorded_at,
            Observation.value,
        ).where(Observation.patient_id.in_(patient_ids), Observation.recorded_at >= since)
        return (await self.session.execute(stmt)).all()

    async def add_change(self, change: FrequencyChange) -> None:
        self.session.add(change)
        await self.session.flush()


def _facts_of(
    course_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
) -> tuple[ScalarSelect[Any], ...]:
    """Correlated subqueries: the latest history row, the first session, the latest events."""
    latest_change = (
        select(FrequencyChange.source)
        .where(FrequencyChange.course_id == course_id)
        .order_by(FrequencyChange.changed_at.desc(), FrequencyChange.id.desc())
        .limit(1)
    )
    latest_session = (
        select(TreatmentSession.adverse_events)
        .where(TreatmentSession.course_id == course_id)
        .order_by(TreatmentSession.performed_at.desc(), TreatmentSession.number.desc())
        .limit(1)
    )
    first_session = select(func.min(TreatmentSession.performed_at)).where(
        TreatmentSession.course_id == course_id
    )
    return (
        latest_change.scalar_subquery(),
        latest_change.with_only_columns(FrequencyChange.changed_at).scalar_subquery(),
        # min() keeps the column type: an aware UTC datetime on every database.
        first_session.scalar_subquery(),
        latest_session.scalar_subquery(),
    )


def _facts(row: Sequence[Any]) -> CourseFacts:
    source, changed_at, first_session_at, events = row
    return CourseFacts(
        last_change_source=source,
        last_change_at=changed_at,
        first_session_at=first_session_at,
        latest_adverse_events=tuple(events or ()),
    )
