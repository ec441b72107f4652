"""SQL for analytics: a course's policy inputs and the values its trends are computed from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

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

    async def active_courses(self, patient_id: uuid.UUID) -> list[Course]:
        stmt = (
            select(Course)
            .where(Course.patient_id == patient_id, Course.status == "active")
            .order_by(Course.start_date.desc(), Course.created_at.desc())
        )
        return list((await self.session.scalars(stmt)).all())

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
        latest_change = (
            select(FrequencyChange.source, FrequencyChange.changed_at)
            .where(FrequencyChange.course_id == course_id)
            .order_by(FrequencyChange.changed_at.desc(), FrequencyChange.id.desc())
            .limit(1)
            .subquery()
        )
        first_session = (
            select(func.min(TreatmentSession.performed_at))
            .where(TreatmentSession.course_id == course_id)
            .scalar_subquery()
        )
        latest_events = (
            select(TreatmentSession.adverse_events)
            .where(TreatmentSession.course_id == course_id)
            .order_by(TreatmentSession.performed_at.desc(), TreatmentSession.number.desc())
            .limit(1)
            .scalar_subquery()
        )
        row = (
            await self.session.execute(
                select(
                    latest_change.c.source,
                    latest_change.c.changed_at,
                    first_session.label("first_session_at"),
                    latest_events.label("latest_events"),
                )
            )
        ).one()
        return CourseFacts(
            last_change_source=row.source,
            last_change_at=row.changed_at,
            # min() keeps the column type, so this is an aware UTC datetime on every database.
            first_session_at=row.first_session_at,
            latest_adverse_events=tuple(row.latest_events or ()),
        )

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
