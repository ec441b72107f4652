"""The policy's inputs: a course's columns and facts and the values its trends are computed
from, as Core statements built once (constructing a select with its correlated subqueries
costs more CPU than executing it), and the plain values they are decoded into.

These are the reads of the one recording pipeline (app/recording/statements.py composes them
with its writes) and of the analytics reads that are not part of it (a course's
recommendation, the patient summary). The rules that live here, once:
- a course's policy facts: the latest frequency change, the first session, the latest
  session's adverse events;
- the values window: from the widest ``window_days_before_start`` of the installed policies
  before the earliest start date of the courses read (each trend keeps the values of its own
  course's window, so extra values change nothing), in (``recorded_at``, ``id``) order, so
  that ties fall the same way on every read and both databases (PostgreSQL orders uuids as
  SQLite orders their hex text).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import itemgetter
from typing import Any, TypedDict

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    FunctionElement,
    Select,
    String,
    Text,
    Uuid,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from app.analytics.models import CourseRecommendation
from app.analytics.registry import policies
from app.core.db import UTCDateTime, table_of
from app.courses.models import Course, FrequencyChange
from app.observations.models import Observation
from app.treatment_sessions.models import TreatmentSession

OBSERVATIONS = table_of(Observation)
COURSES = table_of(Course)
CHANGES = table_of(FrequencyChange)
SESSIONS = table_of(TreatmentSession)
RECOMMENDATIONS = table_of(CourseRecommendation)


@dataclass(frozen=True, slots=True)
class PolicyCourse:
    """The columns of a course that its trends and its policy read, as a plain value (no ORM
    object to build, track or flush on the write path)."""

    id: uuid.UUID
    patient_id: uuid.UUID
    start_date: date
    policy: str
    status: str
    adjustment: str
    sessions_per_week: float
    sessions_done: int
    max_sessions: int | None
    region: str
    paused_at: datetime | None
    resumed_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class CourseFacts:
    """What the policy needs besides the course row (a trend read, which does not run the
    policy, leaves the latest change unread: None)."""

    last_change_source: str
    last_change_at: datetime
    first_session_at: datetime | None
    latest_adverse_events: tuple[str, ...]
    last_change_rule: str | None = None
    # The events of the latest session that had any since the last clinician decision.
    unacknowledged_adverse_events: tuple[str, ...] = ()
    # The recommendation last computed on the write path (course_recommendations): a new one
    # that differs is a `recommendation.changed` event (app/outbox).
    last_action: str | None = None
    last_rule: str | None = None


class FrequencyChangeValues(TypedDict):
    """A change to a course: the new frequency and its history row's values."""

    sessions_per_week: float
    phase: str
    source: str
    rule: str | None
    reason: str


# One stored value of a patient, as the trends read it: (instrument, recorded_at, id, value,
# course_id); course_id None for a value stored without a course. A session's pain_before is
# one too (its id is the session's). A plain tuple: the hot paths build thousands of them
# straight from the database's arrays.
Value = tuple[str, datetime, uuid.UUID, float, uuid.UUID | None]

# The order of values everywhere: (recorded_at, id).
value_order = itemgetter(1, 2)


@dataclass(slots=True)
class PolicyInputs:
    """Courses with their facts, and the patient's values from the earliest of their windows
    in ``value_order``."""

    courses: list[tuple[PolicyCourse, CourseFacts]] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)


def window_days() -> int:
    """The widest window of the installed policies (days before a course's start): the read
    runs before the course, and so its policy, is known."""
    return max(p.window_days_before_start for p in policies().values())


# ---------------------------------------------------------------------------------------------
# Courses and their policy facts

# PolicyCourse's fields, in order (app/analytics/repository.py).
COURSE_COLUMNS = (
    "id",
    "patient_id",
    "start_date",
    "policy",
    "status",
    "adjustment",
    "sessions_per_week",
    "sessions_done",
    "max_sessions",
    "region",
    "paused_at",
    "resumed_at",
    "ended_at",
)


def _facts(course_id: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """The policy's facts of a course, as correlated subqueries labelled as CourseFacts'
    fields."""
    latest_change = (
        select(CHANGES.c.source)
        .where(CHANGES.c.course_id == course_id)
        .order_by(CHANGES.c.changed_at.desc(), CHANGES.c.id.desc())
        .limit(1)
    )
    latest_session = (
        select(SESSIONS.c.adverse_events)
        .where(SESSIONS.c.course_id == course_id)
        .order_by(SESSIONS.c.performed_at.desc(), SESSIONS.c.number.desc())
        .limit(1)
    )
    # A clinician's frequency decision acknowledges the adverse events before it (a resume's
    # row is the clinician's too, but decides nothing: its rule says so).
    decided = (
        select(func.max(CHANGES.c.changed_at))
        .where(
            CHANGES.c.course_id == course_id,
            CHANGES.c.source == "clinician",
            CHANGES.c.rule.is_(None),
        )
        .correlate(COURSES)  # two levels down: auto-correlation would not reach the course
        .scalar_subquery()
    )
    unacknowledged = latest_session.where(
        cast(SESSIONS.c.adverse_events, Text) != "[]",
        or_(decided.is_(None), SESSIONS.c.performed_at > decided),
    )
    return [
        latest_change.scalar_subquery().label("last_change_source"),
        latest_change.with_only_columns(CHANGES.c.changed_at)
        .scalar_subquery()
        .label("last_change_at"),
        latest_change.with_only_columns(CHANGES.c.rule).scalar_subquery().label("last_change_rule"),
        _first_session(course_id),
        latest_session.scalar_subquery().label("latest_adverse_events"),
        unacknowledged.scalar_subquery().label("unacknowledged_adverse_events"),
        *_last_recommendation(course_id),
    ]


def _last_recommendation(course_id: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    latest = select(RECOMMENDATIONS.c.action).where(RECOMMENDATIONS.c.course_id == course_id)
    return [
        latest.scalar_subquery().label("last_action"),
        latest.with_only_columns(RECOMMENDATIONS.c.rule).scalar_subquery().label("last_rule"),
    ]


def _first_session(course_id: ColumnElement[Any]) -> ColumnElement[Any]:
    # min() keeps the column type: an aware UTC datetime on every database.
    first = select(func.min(SESSIONS.c.performed_at)).where(SESSIONS.c.course_id == course_id)
    return first.scalar_subquery().label("first_session_at")


_COURSE = [COURSES.c[name] for name in COURSE_COLUMNS]
_WITH_FACTS = select(*_COURSE, *_facts(COURSES.c.id))
_NEWEST_FIRST = (COURSES.c.start_date.desc(), COURSES.c.created_at.desc())

# Which courses a read is about.
_OF_PATIENT = COURSES.c.patient_id == bindparam("patient_id")
_ACTIVE = and_(_OF_PATIENT, COURSES.c.status == "active")  # the ones new values concern
_NAMED = and_(_OF_PATIENT, COURSES.c.id == bindparam("course_id"))  # a session's course
_BY_ID = COURSES.c.id == bindparam("course_id")  # GET /courses/{id}/recommendation
# A trend read's: the one named (if it is the patient's), else the active one, else the latest.
_TREND = and_(
    _OF_PATIENT,
    or_(
        bindparam("course_id", type_=Uuid).is_(None),
        COURSES.c.id == bindparam("course_id", type_=Uuid),
    ),
)
_TREND_ORDER = ((COURSES.c.status == "active").desc(), *_NEWEST_FIRST)

ACTIVE_COURSES = _WITH_FACTS.where(_ACTIVE).order_by(*_NEWEST_FIRST)
# Every course of the patient, newest first: attribution reads them all, the policy the
# active ones.
PATIENT_COURSES = _WITH_FACTS.where(_OF_PATIENT).order_by(*_NEWEST_FIRST)
NAMED_COURSE = _WITH_FACTS.where(_NAMED)
COURSE_BY_ID = _WITH_FACTS.where(_BY_ID)
# A trend read does not run the policy: of the facts, only the first session (where the
# baseline ends); the others are NULL, not read.
TREND_COURSE = (
    select(
        *_COURSE,
        null().label("last_change_source"),
        null().label("last_change_at"),
        null().label("last_change_rule"),
        _first_session(COURSES.c.id),
        null().label("latest_adverse_events"),
        null().label("unacknowledged_adverse_events"),
        null().label("last_action"),
        null().label("last_rule"),
    )
    .where(_TREND)
    .order_by(*_TREND_ORDER)
    .limit(1)
)

# ---------------------------------------------------------------------------------------------
# The values window


class window_start(FunctionElement[Any]):
    """UTC midnight ``days`` days before the date ``start``: where a course's values begin."""

    type = UTCDateTime()
    inherit_cache = True
    name = "window_start"


@compiles(window_start, "postgresql")
def _window_start_pg(element: window_start, compiler: SQLCompiler, **kw: Any) -> str:
    start, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({start}) - CAST({days} AS INTEGER))::timestamp AT TIME ZONE 'UTC'"


@compiles(window_start, "sqlite")
def _window_start_sqlite(element: window_start, compiler: SQLCompiler, **kw: Any) -> str:
    # UTCDateTime is naive ISO text on SQLite: "YYYY-MM-DD HH:MM:SS" sorts before any value
    # recorded at or after that midnight.
    start, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"datetime({start}, '-' || ({days}) || ' days')"


def values_of(
    courses: FromClause,
    patient: ColumnElement[Any] = bindparam("patient_id"),
    *,
    of_patients: Select[Any] | None = None,
) -> Select[Any]:
    """The values of ``courses`` (their ``id`` and ``start_date``) as ``Value`` rows, from
    the window of the earliest of them on (``window_days`` bound), in (recorded_at, id) order:
    the ``patient``'s observations that belong to one of them or to none, and their sessions'
    pain_before as pain-nrs values, unless a pain-nrs observation names that session.
    ``of_patients`` (a select of patient ids) reads several patients' at once, each row then
    ending with its patient_id."""
    earliest = select(func.min(courses.c.start_date)).scalar_subquery()
    since = window_start(earliest, bindparam("window_days"))
    ids = select(courses.c.id)
    o = OBSERVATIONS
    whose = o.c.patient_id == patient if of_patients is None else o.c.patient_id.in_(of_patients)
    extra_o = [o.c.patient_id] if of_patients is not None else []
    extra_s = [SESSIONS.c.patient_id.label("patient_id")] if of_patients is not None else []
    observed = select(
        o.c.instrument, o.c.recorded_at, o.c.id, o.c.value, o.c.course_id, *extra_o
    ).where(
        whose,
        o.c.recorded_at >= since,
        or_(o.c.course_id.is_(None), o.c.course_id.in_(ids)),
    )
    named = (
        select(o.c.id)
        .where(o.c.session_id == SESSIONS.c.id, o.c.instrument == "pain-nrs")
        .correlate(SESSIONS)
    )
    before_sessions = select(
        literal("pain-nrs", String).label("instrument"),
        SESSIONS.c.performed_at.label("recorded_at"),
        SESSIONS.c.id.label("id"),
        cast(SESSIONS.c.pain_before, Float).label("value"),
        SESSIONS.c.course_id.label("course_id"),
        *extra_s,
    ).where(
        SESSIONS.c.course_id.in_(ids),
        SESSIONS.c.pain_before.is_not(None),
        SESSIONS.c.performed_at >= since,
        ~exists(named),
    )
    both = union_all(observed, before_sessions).subquery("course_values")
    return select(*both.c).order_by(both.c.recorded_at, both.c.id)


_COURSE_IDS = select(COURSES.c.id, COURSES.c.start_date)
ACTIVE_VALUES = values_of(_COURSE_IDS.where(_ACTIVE).subquery())
NAMED_VALUES = values_of(_COURSE_IDS.where(_NAMED).subquery())
COURSE_VALUES = values_of(
    _COURSE_IDS.where(_BY_ID).subquery(),
    select(COURSES.c.patient_id).where(_BY_ID).scalar_subquery(),
)
_COHORT = COURSES.c.id.in_(bindparam("course_ids", expanding=True))
_COHORT_VALUES = values_of(
    _COURSE_IDS.where(_COHORT).subquery(),
    of_patients=select(COURSES.c.patient_id).where(_COHORT),
)
TREND_VALUES = values_of(_COURSE_IDS.where(_TREND).order_by(*_TREND_ORDER).limit(1).subquery())


# ---------------------------------------------------------------------------------------------
# Decoding: rows are read by column label.


def _events(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # json: a raw asyncpg connection returns its text
        value = json.loads(value)
    return tuple(value or ())


def course_of(row: Mapping[str, Any]) -> tuple[PolicyCourse, CourseFacts]:
    facts = CourseFacts(
        last_change_source=row["last_change_source"],
        last_change_at=row["last_change_at"],
        first_session_at=row["first_session_at"],
        latest_adverse_events=_events(row["latest_adverse_events"]),
        last_change_rule=row["last_change_rule"],
        unacknowledged_adverse_events=_events(row["unacknowledged_adverse_events"]),
        last_action=row["last_action"],
        last_rule=row["last_rule"],
    )
    return PolicyCourse(*(row[name] for name in COURSE_COLUMNS)), facts


async def read_inputs(
    session: AsyncSession, courses: Select[Any], values: Select[Any], params: dict[str, Any]
) -> PolicyInputs:
    """Courses and their window's values on a session: two statements."""
    found = [course_of(r._mapping) for r in await session.execute(courses, params)]
    if not found:
        return PolicyInputs()
    rows = await session.execute(values, {**params, "window_days": window_days()})
    return PolicyInputs(found, [tuple(row) for row in rows])


class AnalyticsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def course_inputs(self, course_id: uuid.UUID) -> PolicyInputs:
        """One course (whoever's) with its facts and values; no course when unknown."""
        return await read_inputs(
            self.session, COURSE_BY_ID, COURSE_VALUES, {"course_id": course_id}
        )

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

    async def cohort_values(self, course_ids: Sequence[uuid.UUID]) -> Sequence[Any]:
        """The values of ``course_ids`` as ``Value`` rows each ending with its patient_id
        (the courses' read, for many patients at once)."""
        params = {"course_ids": list(course_ids), "window_days": window_days()}
        rows: Sequence[Any] = (await self.session.execute(_COHORT_VALUES, params)).all()
        return rows
