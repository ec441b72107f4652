"""SQL for analytics: a course's policy inputs and the values its trends are computed from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypedDict, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Row,
    ScalarSelect,
    Uuid,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.db import new_id, table_of
from app.courses.models import Course, FrequencyChange
from app.observations.models import Observation
from app.treatment_sessions.models import TreatmentSession


@dataclass(frozen=True, slots=True)
class PolicyCourse:
    """The columns of a course that its trends and its policy read, as a plain value: the
    write path reads them with Core (no ORM object to build, track or flush)."""

    id: uuid.UUID
    patient_id: uuid.UUID
    start_date: date
    policy: str
    status: str
    adjustment: str
    sessions_per_week: float
    sessions_done: int
    max_sessions: int | None


_POLICY_COLUMNS = (
    Course.id,
    Course.patient_id,
    Course.start_date,
    Course.policy,
    Course.status,
    Course.adjustment,
    Course.sessions_per_week,
    Course.sessions_done,
    Course.max_sessions,
)
_COURSES = table_of(Course)
_FREQUENCY_CHANGES = table_of(FrequencyChange)


class FrequencyChangeValues(TypedDict):
    """A policy's change to a course: the new frequency and its history row's values."""

    sessions_per_week: float
    phase: str
    source: str
    rule: str | None
    reason: str


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

    async def policy_courses(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None = None
    ) -> list[tuple[PolicyCourse, CourseFacts]]:
        """The patient's active courses (or the one named) with their policy facts, in one
        round trip."""
        if course_id is None:
            result = await self.session.execute(_ACTIVE_COURSES, {"patient_id": patient_id})
        else:
            params = {"patient_id": patient_id, "course_id": course_id}
            result = await self.session.execute(_NAMED_COURSE, params)
        return [_course_and_facts(row) for row in result.all()]

    async def course_for_trends(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None
    ) -> tuple[PolicyCourse, CourseFacts] | None:
        """The course named (if it is the patient's), else the patient's active course, else
        the latest one, with its policy facts: one round trip."""
        if course_id is None:
            result = await self.session.execute(_TRENDS_COURSE, {"patient_id": patient_id})
        else:
            params = {"patient_id": patient_id, "course_id": course_id}
            result = await self.session.execute(_NAMED_COURSE, params)
        row = result.first()
        return _course_and_facts(row) if row is not None else None

    async def facts(self, course_id: uuid.UUID) -> CourseFacts:
        return _facts((await self.session.execute(_FACTS, {"course_id": course_id})).one())

    async def values_since(
        self, patient_id: uuid.UUID, since: datetime
    ) -> Sequence[Row[str, datetime, float]]:
        """(instrument, recorded_at, value) of the patient from ``since``, oldest first."""
        params = {"patient_id": patient_id, "since": since}
        return (await self.session.execute(_VALUES_SINCE, params)).all()

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

    async def change_frequency(
        self, course: PolicyCourse, change: FrequencyChangeValues, now: datetime
    ) -> bool:
        """Apply a policy change unless the course moved on meanwhile: the UPDATE only matches
        the frequency the policy saw, so of two concurrent recordings that both decide the same
        step, one applies it and the other finds nothing to do (one history row, not two)."""
        params = {
            "course_id": course.id,
            "seen": course.sessions_per_week,
            "sessions_per_week": change["sessions_per_week"],
            "phase": change["phase"],
            "updated_at": now,
        }
        result = await self.session.execute(_CHANGE_FREQUENCY, params)
        if cast("CursorResult[Any]", result).rowcount != 1:
            return False
        await self.session.execute(
            _ADD_CHANGE, {"id": new_id(), "course_id": course.id, "changed_at": now, **change}
        )
        return True


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


def _course_and_facts(row: Sequence[Any]) -> tuple[PolicyCourse, CourseFacts]:
    split = len(_POLICY_COLUMNS)
    return PolicyCourse(*row[:split]), _facts(row[split:])


# The statements of the recording and trend paths, built once: constructing a select with its
# four correlated subqueries costs more CPU (~0.6 ms) than executing it.
_COURSES_WITH_FACTS = select(*_POLICY_COLUMNS, *_facts_of(Course.id)).where(
    Course.patient_id == bindparam("patient_id")
)
_ACTIVE_COURSES = _COURSES_WITH_FACTS.where(Course.status == "active").order_by(
    Course.start_date.desc(), Course.created_at.desc()
)
_NAMED_COURSE = _COURSES_WITH_FACTS.where(Course.id == bindparam("course_id"))
_TRENDS_COURSE = _COURSES_WITH_FACTS.order_by(
    (Course.status == "active").desc(), Course.start_date.desc(), Course.created_at.desc()
).limit(1)
_FACTS = select(*_facts_of(bindparam("course_id", type_=Uuid)))
_VALUES_SINCE = (
    select(Observation.instrument, Observation.recorded_at, Observation.value)
    .where(
        Observation.patient_id == bindparam("patient_id"),
        Observation.recorded_at >= bindparam("since"),
    )
    .order_by(Observation.recorded_at)
)
_CHANGE_FREQUENCY = (
    update(_COURSES)
    .where(
        _COURSES.c.id == bindparam("course_id"),
        _COURSES.c.status == "active",
        _COURSES.c.sessions_per_week == bindparam("seen"),
    )
    .values(
        sessions_per_week=bindparam("sessions_per_week"),
        phase=bindparam("phase"),
        updated_at=bindparam("updated_at"),
    )
)
_ADD_CHANGE = insert(_FREQUENCY_CHANGES)
