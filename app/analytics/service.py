"""Feeds the pure trend and policy functions from the database and applies their results."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.cohort import CohortSummary, outcome, summarise, weekly_improvement
from app.analytics.errors import UnknownPolicy
from app.analytics.policy import CourseState, PolicyParams, Recommendation, evaluate
from app.analytics.registry import policies
from app.analytics.repository import AnalyticsRepository, CourseFacts, Value
from app.analytics.trends import (
    InstrumentTrend,
    Point,
    Status,
    instrument_trend,
    primary_instrument,
    primary_order,
    window_start,
)
from app.core.db import utcnow
from app.courses.errors import CourseNotFound
from app.courses.schedule import RESUMED
from app.observations.catalogue import BY_CODE, CATALOGUE, Instrument


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
    @property
    def paused_at(self) -> datetime | None: ...
    @property
    def resumed_at(self) -> datetime | None: ...


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
    normal = [code for code, t in trends.items() if t.status == "normal"]
    return primary_instrument([code for code, t in trends.items() if t.n > 0], normal)


def group_points(values: Iterable[Value], course_id: uuid.UUID) -> dict[str, list[Point]]:
    """A course's values (those that belong to it, or to no course) as each instrument's
    points, in the values' order."""
    grouped: dict[str, list[Point]] = defaultdict(list)
    for instrument, recorded_at, _, value, owner, n in values:
        if owner is None or owner == course_id:
            grouped[instrument].append(Point(recorded_at, value, n))
    return grouped


class AnalyticsService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = AnalyticsRepository(session)

    async def analyse(self, course_id: uuid.UUID, now: datetime) -> CourseAnalysis:
        """Trends of every instrument with values in the course window, and the policy's say;
        404 for an unknown course."""
        inputs = await self.repo.course_inputs(course_id, now)
        if not inputs.courses:
            raise CourseNotFound(course_id)
        course, facts = inputs.courses[0]
        points = group_points(inputs.values, course.id)
        return analysis(course, facts, points, now, policy_of(course))

    async def recommendation(self, course_id: uuid.UUID) -> CourseAnalysis:
        return await self.analyse(course_id, utcnow())

    async def cohort(
        self,
        *,
        indication: str | None,
        technique: str | None,
        since: date | None,
        until: date | None,
    ) -> CohortSummary:
        """All matching courses in one pass: three queries whatever the cohort's size, each
        course's values read by the same rule as its trends."""
        now = utcnow()
        courses = await self.repo.cohort_courses(indication, technique, since, until)
        if not courses:
            return summarise([])
        first_sessions = await self.repo.first_sessions([c.id for c in courses])
        by_patient: dict[uuid.UUID, list[Value]] = defaultdict(list)
        for *value, patient_id in await self.repo.cohort_values([c.id for c in courses]):
            by_patient[patient_id].append(tuple(value))
        outcomes = []
        for course in courses:
            params = policy_of(course)
            points = group_points(by_patient[course.patient_id], course.id)
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


def policy_of(course: CourseView) -> PolicyParams:
    params = policies().get(course.policy)
    if params is None:
        raise UnknownPolicy(f"The course's policy {course.policy!r} is not installed.")
    return params


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
    chosen: tuple[InstrumentTrend, Instrument] | None = None
    for code in primary_order(with_values):  # the first without status `normal`, else the first
        instrument = BY_CODE[code]
        trend = instrument_trend(
            instrument,
            points[code],
            start_date=course.start_date,
            first_session_at=facts.first_session_at,
            now=now,
            thresholds=params.thresholds,
        )
        if chosen is None:  # the first, kept when every one is `normal`
            chosen = (trend, instrument)
        if trend.status != "normal":
            chosen = (trend, instrument)
            break
    if chosen is None:
        return evaluate(params, _state(course, facts), None, None, now)
    return evaluate(params, _state(course, facts), chosen[0], chosen[1], now)


def _any_between(points: list[Point] | None, since: datetime, until: datetime) -> bool:
    return any(since <= p.recorded_at <= until for p in points or ())


def trends_of(
    course: CourseView,
    first_session_at: datetime | None,
    points: dict[str, list[Point]],
    now: datetime,
    params: PolicyParams,
) -> CourseTrends:
    trends = course_trends(course, points, first_session_at, now, params)
    return CourseTrends(course, trends, _primary(trends))


def analysis(
    course: CourseView,
    facts: CourseFacts,
    points: dict[str, list[Point]],
    now: datetime,
    params: PolicyParams,
) -> CourseAnalysis:
    found = trends_of(course, facts.first_session_at, points, now, params)
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
        unacknowledged_adverse_events=facts.unacknowledged_adverse_events,
        resumed_after_days=_resumed_after_days(course, facts),
    )


def _resumed_after_days(course: CourseView, facts: CourseFacts) -> float | None:
    """How long the course was paused, while its resume is the latest change."""
    paused, resumed = course.paused_at, course.resumed_at
    if facts.last_change_rule != RESUMED or paused is None or resumed is None:
        return None
    return (resumed - paused).total_seconds() / 86400.0
