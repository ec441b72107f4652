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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any, TypedDict

from sqlalchemy import (
    ColumnElement,
    Date,
    Float,
    FromClause,
    FunctionElement,
    Integer,
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
    literal_column,
    null,
    or_,
    select,
    true,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from app.analytics.models import NO_COURSE, CourseRecommendation, ValueDay, ValueDayStale
from app.analytics.registry import policies
from app.analytics.trends import MAX_VALUES
from app.core.db import UTCDateTime, table_of
from app.courses.models import Course, FrequencyChange
from app.observations.models import Observation
from app.treatment_sessions.models import TreatmentSession

OBSERVATIONS = table_of(Observation)
COURSES = table_of(Course)
CHANGES = table_of(FrequencyChange)
SESSIONS = table_of(TreatmentSession)
RECOMMENDATIONS = table_of(CourseRecommendation)
DAYS = table_of(ValueDay)
STALE = table_of(ValueDayStale)


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
# course_id, n); course_id None for a value stored without a course. A session's pain_before is
# one too (its id is the session's). n is 1, or a day's count for a day reduced ahead of the
# read (a row of value_days: the median of n values at the median of their times). A plain
# tuple: the hot paths build them straight from the database's arrays.
Value = tuple[str, datetime, uuid.UUID, float, uuid.UUID | None, int]

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


class utc_day(FunctionElement[Any]):
    """The UTC day of a timestamp, as a date (the key of ``value_days``)."""

    type = Date()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "postgresql")
def _utc_day_pg(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    (at,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({at}) AT TIME ZONE 'UTC')::date"


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    (at,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"date({at})"


def values_of(
    courses: FromClause,
    patient: ColumnElement[Any] = bindparam("patient_id"),
    *,
    of_patients: Select[Any] | None = None,
) -> Select[Any]:
    """The values of ``courses`` (their ``id`` and ``start_date``) as ``Value`` rows (each
    standing for 1 value), from
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
        o.c.instrument, o.c.recorded_at, o.c.id, o.c.value, o.c.course_id, _ONE, *extra_o
    ).where(
        whose,
        o.c.recorded_at >= since,
        or_(o.c.course_id.is_(None), o.c.course_id.in_(ids)),
    )
    both = union_all(observed, _before_sessions(ids, since, extra_s)).subquery("course_values")
    return select(*both.c).order_by(both.c.recorded_at, both.c.id)


def _before_sessions(
    ids: Select[Any], since: ColumnElement[Any], extra: Sequence[ColumnElement[Any]] = ()
) -> Select[Any]:
    """The sessions' pain_before of the courses ``ids`` as pain-nrs values from ``since``,
    unless a pain-nrs observation names the session."""
    o = OBSERVATIONS
    named = (
        select(o.c.id)
        .where(o.c.session_id == SESSIONS.c.id, o.c.instrument == "pain-nrs")
        .correlate(SESSIONS)
    )
    return select(
        literal("pain-nrs", String).label("instrument"),
        SESSIONS.c.performed_at.label("recorded_at"),
        SESSIONS.c.id.label("id"),
        cast(SESSIONS.c.pain_before, Float).label("value"),
        SESSIONS.c.course_id.label("course_id"),
        _ONE,
        *extra,
    ).where(
        SESSIONS.c.course_id.in_(ids),
        SESSIONS.c.pain_before.is_not(None),
        SESSIONS.c.performed_at >= since,
        ~exists(named),
    )


class midnight(FunctionElement[Any]):
    """UTC midnight starting the date ``day`` plus ``days`` (a literal number of days)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "midnight"


@compiles(midnight, "postgresql")
def _midnight_pg(element: midnight, compiler: SQLCompiler, **kw: Any) -> str:
    day, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({day}) + CAST({days} AS INTEGER))::timestamp AT TIME ZONE 'UTC'"


@compiles(midnight, "sqlite")
def _midnight_sqlite(element: midnight, compiler: SQLCompiler, **kw: Any) -> str:
    day, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"datetime({day}, ({days}) || ' days')"


def _new_days(dialect: str) -> Select[Any]:
    """(instrument, day) of the values being recorded (``new_instruments``, ``new_days``):
    arrays on PostgreSQL, JSON arrays on SQLite."""
    if dialect == "postgresql":
        pairs = func.unnest(
            bindparam("new_instruments", type_=postgresql.ARRAY(String())),
            bindparam("new_days", type_=postgresql.ARRAY(Date())),
        ).table_valued("instrument", "day")
        pairs = pairs.render_derived(name="new_values")
        return select(pairs.c.instrument, pairs.c.day)
    instruments = func.json_each(bindparam("new_instruments")).table_valued("key", "value")
    days = func.json_each(bindparam("new_days")).table_valued("key", "value")
    return select(
        # type_coerce, not CAST: SQLite's CAST(... AS DATE) makes '2026-12-03' the number 2026.
        instruments.c.value.label("instrument"),
        type_coerce(days.c.value, Date).label("day"),
    ).join_from(instruments, days, instruments.c.key == days.c.key)


def reduced_values_of(
    courses: FromClause, dialect: str, patient: ColumnElement[Any] = bindparam("patient_id")
) -> Select[Any]:
    """``values_of(courses)`` with a row of ``value_days`` in place of the values of a day
    wherever that gives the same trends (docs/analytics.md, "Bounded cost"), each row ending
    with how many values it stands for (``n``).

    An instrument's values come as they are when any of the courses has at most
    ``MAX_VALUES`` of them in clean days (below the threshold the trend reads each value,
    and clean days only undercount: stale days are not counted, and the narrowest window of
    the installed policies is, ``min_window_days``); otherwise a day comes as its row unless
    it is *raw*: stale (its row is out of date or missing), held by two rows (two courses,
    or a course and none: the trend of each course merges them), holding a value after
    ``now``, or a day of a value being recorded (``new_instruments``/``new_days``: the plan
    adds it to the day's values).
    """
    earliest = select(func.min(courses.c.start_date)).scalar_subquery()
    since = window_start(earliest, bindparam("window_days"))
    since_day = utc_day(since)
    ids = select(courses.c.id)
    no_course = literal(NO_COURSE, Uuid())
    now = bindparam("now", type_=UTCDateTime())
    d = DAYS
    considered = (
        select(d.c.instrument, d.c.day, d.c.course_key, d.c.n, d.c.recorded_at, d.c.value)
        .add_columns(d.c.last_at, d.c.id)
        .where(
            d.c.patient_id == patient,
            d.c.day >= since_day,
            or_(d.c.course_key.in_(ids), d.c.course_key == no_course),
        )
        .cte("considered")
    )
    c = considered.c
    raw_days = union(
        select(c.instrument, c.day).group_by(c.instrument, c.day).having(func.count() > 1),
        select(c.instrument, c.day).where(c.last_at > now),
        select(STALE.c.instrument, STALE.c.day).where(
            STALE.c.patient_id == patient, STALE.c.day >= since_day
        ),
        _new_days(dialect),
    ).cte("raw_days")
    clean = ~exists().where(raw_days.c.instrument == c.instrument, raw_days.c.day == c.day)
    narrow = utc_day(window_start(courses.c.start_date, bindparam("min_window_days")))
    small = (
        select(c.instrument)
        .select_from(courses)
        .join(considered, or_(c.course_key == courses.c.id, c.course_key == no_course))
        .where(c.day >= narrow, clean)
        .group_by(courses.c.id, c.instrument)
        .having(func.sum(c.n) <= MAX_VALUES)
        .cte("small")
    )
    ranges = union_all(
        select(
            raw_days.c.instrument,
            midnight(raw_days.c.day, literal_column("0")).label("opens"),
            midnight(raw_days.c.day, literal_column("1")).label("closes"),
        ).where(raw_days.c.instrument.not_in(select(small.c.instrument))),
        select(
            small.c.instrument, since.label("opens"), bindparam("until", type_=UTCDateTime())
        ).distinct(),
    ).cte("raw_ranges")
    r = ranges.c

    o = OBSERVATIONS
    in_range = and_(
        o.c.patient_id == patient,
        o.c.instrument == r.instrument,
        o.c.recorded_at >= r.opens,
        o.c.recorded_at < r.closes,
    )
    columns = (o.c.instrument, o.c.recorded_at, o.c.id, o.c.value, o.c.course_id, _ONE)
    owned = (o.c.recorded_at >= since, or_(o.c.course_id.is_(None), o.c.course_id.in_(ids)))
    if dialect == "postgresql":
        # A range at a time through the (patient, instrument, recorded_at) index: a plain
        # join lets the planner hash every value of the patient's window instead (OFFSET 0
        # keeps the subquery from being flattened into that join).
        each = select(*columns).where(in_range, *owned).offset(0).lateral("raw_values")
        observed = select(*each.c).select_from(ranges).join(each, true())
    else:  # SQLite has no LATERAL; its nested loop reads the index a range at a time
        observed = select(*columns).select_from(ranges).join(o, in_range).where(*owned)
    sessions = _before_sessions(ids, since).where(
        exists().where(
            r.instrument == "pain-nrs",
            SESSIONS.c.performed_at >= r.opens,
            SESSIONS.c.performed_at < r.closes,
        )
    )
    reduced = select(
        c.instrument, c.recorded_at, c.id, c.value, func.nullif(c.course_key, no_course), c.n
    ).where(
        ~exists().where(
            r.instrument == c.instrument, c.recorded_at >= r.opens, c.recorded_at < r.closes
        )
    )
    both = union_all(observed, sessions, reduced).subquery("course_values")
    return select(*both.c).order_by(both.c.recorded_at, both.c.id)


def window_params(
    dialect: str, now: datetime, new: Iterable[tuple[str, datetime]] = ()
) -> dict[str, Any]:
    """The parameters of a ``reduced_values_of`` read at ``now`` with the values ``new``
    (instrument, recorded_at) being recorded."""
    instruments = [instrument for instrument, _ in new]
    days = [recorded_at.astimezone(UTC).date() for _, recorded_at in new]
    if dialect != "postgresql":
        return {
            "new_instruments": json.dumps(instruments),
            "new_days": json.dumps([day.isoformat() for day in days]),
            **_window_constants(now),
        }
    return {"new_instruments": instruments, "new_days": days, **_window_constants(now)}


def _window_constants(now: datetime) -> dict[str, Any]:
    widths = [p.window_days_before_start for p in policies().values()]
    return {
        "window_days": max(widths),
        "min_window_days": min(widths),
        "now": now,
        "until": _UNTIL,
    }


_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
_ONE = literal_column("1", Integer).label("n")
_DIALECTS = ("postgresql", "sqlite")
_COURSE_IDS = select(COURSES.c.id, COURSES.c.start_date)
ACTIVE_VALUES = {d: reduced_values_of(_COURSE_IDS.where(_ACTIVE).subquery(), d) for d in _DIALECTS}
NAMED_VALUES = {d: reduced_values_of(_COURSE_IDS.where(_NAMED).subquery(), d) for d in _DIALECTS}
COURSE_VALUES = {
    d: reduced_values_of(
        _COURSE_IDS.where(_BY_ID).subquery(),
        d,
        select(COURSES.c.patient_id).where(_BY_ID).scalar_subquery(),
    )
    for d in _DIALECTS
}
_COHORT = COURSES.c.id.in_(bindparam("course_ids", expanding=True))
_COHORT_VALUES = values_of(
    _COURSE_IDS.where(_COHORT).subquery(),
    of_patients=select(COURSES.c.patient_id).where(_COHORT),
)
TREND_VALUES = {
    d: reduced_values_of(_COURSE_IDS.where(_TREND).order_by(*_TREND_ORDER).limit(1).subquery(), d)
    for d in _DIALECTS
}


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
    session: AsyncSession,
    courses: Select[Any],
    values: Mapping[str, Select[Any]],
    params: dict[str, Any],
    now: datetime,
    new: Iterable[tuple[str, datetime]] = (),
) -> PolicyInputs:
    """Courses and their window's values (``values`` by dialect, read at ``now`` with the
    values ``new`` being recorded) on a session: two statements."""
    found = [course_of(r._mapping) for r in await session.execute(courses, params)]
    if not found:
        return PolicyInputs()
    dialect = session.get_bind().dialect.name
    window = window_params(dialect, now, new)
    rows = await session.execute(values[dialect], {**params, **window})
    return PolicyInputs(found, [tuple(row) for row in rows])


class AnalyticsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def course_inputs(self, course_id: uuid.UUID, now: datetime) -> PolicyInputs:
        """One course (whoever's) with its facts and values at ``now``; no course when
        unknown."""
        return await read_inputs(
            self.session, COURSE_BY_ID, COURSE_VALUES, {"course_id": course_id}, now
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
