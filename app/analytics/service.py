"""Feeds the pure trend and policy functions from the database and applies their results."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics import pg_reads
from app.analytics.cohort import CohortSummary, outcome, summarise, weekly_improvement
from app.analytics.errors import UnknownPolicy
from app.analytics.policy import CourseState, PolicyParams, Recommendation, evaluate
from app.analytics.registry import policies
from app.analytics.repository import (
    AnalyticsRepository,
    CourseFacts,
    FrequencyChangeValues,
    PolicyCourse,
)
from app.analytics.trends import (
    InstrumentTrend,
    Point,
    Status,
    instrument_trend,
    primary_instrument,
    window_start,
)
from app.audit.service import audit_values
from app.auth.rules import AccessRecord
from app.core import pg
from app.core.db import utcnow
from app.courses.errors import CourseNotFound
from app.courses.schedule import phase_for
from app.courses.service import CourseService
from app.observations.catalogue import BY_CODE, CATALOGUE
from app.patients.service import PatientService


class CourseView(Protocol):
    """What trends and the policy read of a course: an ORM ``Course`` or a ``PolicyCourse``."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def patient_id(self) -> uuid.UUID: ...
    @property
    def start_date(self) -> date: ...
    @property
    def policy(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def adjustment(self) -> str: ...
    @property
    def sessions_per_week(self) -> float: ...
    @property
    def sessions_done(self) -> int: ...
    @property
    def max_sessions(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class CourseTrends:
    """Each instrument's trend within a course, and which one is primary."""

    course: CourseView
    trends: dict[str, InstrumentTrend]  # in catalogue order, instruments with values only
    primary: str | None

    @property
    def status(self) -> Status:
        trend = self.trends.get(self.primary) if self.primary else None
        return trend.status if trend else "insufficient-data"


@dataclass(frozen=True, slots=True)
class CourseAnalysis(CourseTrends):
    """The trends and the policy's say on them."""

    recommendation: Recommendation


def course_trends(
    course: CourseView,
    points: dict[str, list[Point]],
    first_session_at: datetime | None,
    now: datetime,
    params: PolicyParams,
) -> dict[str, InstrumentTrend]:
    """The trend of every instrument with values, in catalogue order."""
    return {
        ins.code: instrument_trend(
            ins,
            points[ins.code],
            start_date=course.start_date,
            first_session_at=first_session_at,
            now=now,
            thresholds=params.thresholds,
        )
        for ins in CATALOGUE
        if points.get(ins.code)
    }


def _primary(trends: dict[str, InstrumentTrend]) -> str | None:
    return primary_instrument([code for code, t in trends.items() if t.n > 0])


def group_points(rows: Iterable[tuple[str, datetime, float]]) -> dict[str, list[Point]]:
    """(instrument, recorded_at, value) rows as each instrument's points, in the rows' order."""
    grouped: dict[str, list[Point]] = defaultdict(list)
    for code, recorded_at, value in rows:
        grouped[code].append(Point(recorded_at, value))
    return grouped


class AnalyticsService:
    def __init__(self, session: AsyncSession, pool: pg.Pool | None = None) -> None:
        self.session = session
        self.repo = AnalyticsRepository(session)
        self.pool = pool  # PostgreSQL: trend reads run as one statement (pg_reads)

    @staticmethod
    def policy_of(course: CourseView) -> PolicyParams:
        params = policies().get(course.policy)
        if params is None:
            raise UnknownPolicy(f"The course's policy {course.policy!r} is not installed.")
        return params

    async def analyse(
        self, course: CourseView, now: datetime, facts: CourseFacts | None = None
    ) -> CourseAnalysis:
        """Trends of every instrument with values in the course window, and the policy's say."""
        params = self.policy_of(course)
        if facts is None:
            facts = await self.repo.facts(course.id)
        since = window_start(course.start_date, params.thresholds)
        points = group_points(await self.repo.values_since(course.patient_id, since))
        return _analysis(course, facts, points, now, params)

    async def after_recording(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None = None
    ) -> None:
        """Run the policy once for the course(s) that new data concerns, in this transaction:
        two queries (the courses with their facts, the values), then pure functions.

        A session names its course; an observation concerns the patient's active courses.
        """
        courses = await self.repo.policy_courses(patient_id, course_id)
        if not courses:
            return
        now = utcnow()
        since = min(window_start(c.start_date, self.policy_of(c).thresholds) for c, _ in courses)
        # One read for every course: each trend keeps the values of its own window.
        points = group_points(await self.repo.values_since(patient_id, since))
        for course, change in frequency_changes(courses, points, now):
            await self.repo.change_frequency(course, change, now)

    async def trends(
        self,
        patient_id: uuid.UUID,
        course_id: uuid.UUID | None,
        access: AccessRecord,
    ) -> CourseTrends | None:
        """The trends of the course asked for (default: the active course, else the latest);
        None when the patient has no course. 404 for an unknown patient or another's course.
        Not the policy's say: a trend read does not show it (GET /recommendation does).

        Two queries in the common case (the course with its first session, the values), one
        on PostgreSQL: the patient is only looked up when no course answers, to tell "no
        course" from "no patient".
        """
        rows: pg_reads.Rows | None = None
        found: tuple[PolicyCourse, datetime | None] | None
        if self.pool is not None:
            # One statement: the course, its first session, its values and, when there is a
            # course to answer with, the request's audit row (otherwise the request's hooks
            # write it).
            audit_row = audit_values(access, 200)
            async with pg.connection(self.pool) as conn:
                found, rows = await pg_reads.trends_course(conn, patient_id, course_id, audit_row)
            access.written = found is not None
        else:
            with_facts = await self.repo.course_for_trends(patient_id, course_id)
            found = (with_facts[0], with_facts[1].first_session_at) if with_facts else None
        if found is None:
            await PatientService(self.session).get(patient_id)  # 404 for an unknown patient
            if course_id is not None:
                raise CourseNotFound(course_id)
            return None
        course, first_session_at = found
        params = self.policy_of(course)
        if rows is not None:
            points = group_points(rows)
        else:
            since = window_start(course.start_date, params.thresholds)
            points = group_points(await self.repo.values_since(course.patient_id, since))
        return _trends_of(course, first_session_at, points, utcnow(), params)

    async def recommendation(self, course_id: uuid.UUID) -> CourseAnalysis:
        course = await CourseService(self.session).get(course_id)
        return await self.analyse(course, utcnow())

    async def cohort(
        self,
        *,
        indication: str | None,
        technique: str | None,
        since: date | None,
        until: date | None,
    ) -> CohortSummary:
        """All matching courses in one pass: three queries whatever the cohort's size."""
        now = utcnow()
        courses = await self.repo.cohort_courses(indication, technique, since, until)
        if not courses:
            return summarise([])
        first_sessions = await self.repo.first_sessions([c.id for c in courses])
        earliest = min(window_start(c.start_date, self.policy_of(c).thresholds) for c in courses)
        values = await self.repo.values_of_patients({c.patient_id for c in courses}, earliest)
        by_patient: dict[uuid.UUID, list[tuple[str, datetime, float]]] = defaultdict(list)
        for patient_id, code, recorded_at, value in values:
            by_patient[patient_id].append((code, recorded_at, value))
        outcomes = []
        for course in courses:
            params = self.policy_of(course)
            points = group_points(by_patient[course.patient_id])
            first = first_sessions.get(course.id)
            trends = course_trends(course, points, first, now, params)
            primary = _primary(trends)
            if primary is None:
                outcomes.append(outcome(None))
                continue
            weekly = weekly_improvement(
                BY_CODE[primary], points[primary], start_date=course.start_date,
                first_session_at=first, now=now, thresholds=params.thresholds,
            )  # fmt: skip
            outcomes.append(outcome(trends[primary], weekly))
        return summarise(outcomes)


def frequency_changes(
    courses: Iterable[tuple[PolicyCourse, CourseFacts]],
    points: dict[str, list[Point]],
    now: datetime,
) -> list[tuple[PolicyCourse, FrequencyChangeValues]]:
    """The change the policy makes to each course it would adjust, given the patient's values
    (each course's trends keep the values of its own window)."""
    changes = []
    for course, facts in courses:
        rec = verdict(course, facts, points, now, AnalyticsService.policy_of(course))
        if rec.apply:
            frequency = rec.recommended_sessions_per_week
            change: FrequencyChangeValues = {
                "sessions_per_week": frequency,
                "phase": phase_for(frequency),
                "source": "policy",
                "rule": rec.rule,
                "reason": rec.rationale,
            }
            changes.append((course, change))
    return changes


def verdict(
    course: CourseView,
    facts: CourseFacts,
    points: dict[str, list[Point]],
    now: datetime,
    params: PolicyParams,
) -> Recommendation:
    """The policy's say on a course: ``_analysis(...).recommendation`` without the trends of the
    other instruments, which the policy does not read (half the work of a write with two)."""
    since = window_start(course.start_date, params.thresholds)
    with_values = [ins.code for ins in CATALOGUE if _any_between(points.get(ins.code), since, now)]
    primary = primary_instrument(with_values)
    if primary is None:
        return evaluate(params, _state(course, facts), None, None, now)
    instrument = BY_CODE[primary]
    trend = instrument_trend(
        instrument,
        points[primary],
        start_date=course.start_date,
        first_session_at=facts.first_session_at,
        now=now,
        thresholds=params.thresholds,
    )
    return evaluate(params, _state(course, facts), trend, instrument, now)


def _any_between(points: list[Point] | None, since: datetime, until: datetime) -> bool:
    return any(since <= p.recorded_at <= until for p in points or ())


def _trends_of(
    course: CourseView,
    first_session_at: datetime | None,
    points: dict[str, list[Point]],
    now: datetime,
    params: PolicyParams,
) -> CourseTrends:
    trends = course_trends(course, points, first_session_at, now, params)
    return CourseTrends(course, trends, _primary(trends))


def _analysis(
    course: CourseView,
    facts: CourseFacts,
    points: dict[str, list[Point]],
    now: datetime,
    params: PolicyParams,
) -> CourseAnalysis:
    found = _trends_of(course, facts.first_session_at, points, now, params)
    primary = found.primary
    rec = evaluate(
        params,
        _state(course, facts),
        found.trends.get(primary) if primary else None,
        BY_CODE[primary] if primary else None,
        now,
    )
    return CourseAnalysis(course, found.trends, primary, rec)


def _state(course: CourseView, facts: CourseFacts) -> CourseState:
    return CourseState(
        status=course.status,
        adjustment=course.adjustment,
        sessions_per_week=course.sessions_per_week,
        sessions_done=course.sessions_done,
        max_sessions=course.max_sessions,
        start_date=course.start_date,
        last_change_source=facts.last_change_source,
        last_change_at=facts.last_change_at,
        latest_session_adverse_events=facts.latest_adverse_events,
    )


__all__: Sequence[str] = ["AnalyticsService", "CourseAnalysis", "CourseTrends"]
