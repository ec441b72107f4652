"""Every statement of the recording pipeline, as SQLAlchemy Core built once per process.

The session store (app/recording/session_store.py) executes these objects on an
AsyncSession; the PostgreSQL store (app/recording/pg_store.py) runs the same objects compiled
once for asyncpg, including a few compositions into single statements (data-modifying CTEs)
that SQLite cannot run. The reads (courses, facts, the values window) are the analytics
repository's (app/analytics/repository.py). The rules that live here, once:
- insert unless the id is taken: the primary key decides, inside the database;
- the request's audit row written with the observation only if it was stored;
- the compare-and-set frequency change: the UPDATE only matches the frequency the policy saw,
  so of two concurrent recordings that decide the same step, one applies it and the other
  finds nothing to do (one history row, not two).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Select,
    Update,
    Uuid,
    any_,
    bindparam,
    exists,
    func,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from app.analytics.repository import (
    CHANGES,
    COURSES,
    NAMED_COURSE,
    PATIENT_COURSES,
    SESSIONS,
    TREND_COURSE,
    values_of,
)
from app.audit.models import AuditEvent
from app.core.db import UTCDateTime, table_of
from app.observations import bulk
from app.patients.models import Patient

OBSERVATIONS = bulk.TABLE
AUDIT = table_of(AuditEvent)
PATIENTS = table_of(Patient)

# ---------------------------------------------------------------------------------------------
# Writes


def _bound(table: Any, names: tuple[str, ...], prefix: str = "") -> dict[str, BindParameter[Any]]:
    """A parameter per column, of the column's type, named ``prefix`` + the column's name."""
    return {name: bindparam(prefix + name, type_=table.c[name].type) for name in names}


OBSERVATION_COLUMNS: tuple[str, ...] = bulk.COLUMNS
AUDIT_COLUMNS: tuple[str, ...] = tuple(column.key for column in AUDIT.columns)

# One observation unless its id is taken: the stored id, or no row.
INSERT_OBSERVATION: dict[str, Insert] = {
    name: dialect.insert(OBSERVATIONS)
    .values(_bound(OBSERVATIONS, OBSERVATION_COLUMNS))
    .on_conflict_do_nothing(index_elements=[OBSERVATIONS.c.id])
    .returning(OBSERVATIONS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
# The request's audit row's parameters are "audit_" + its column's name: the statements that
# write it with an observation bind both.
AUDIT_PREFIX = "audit_"

# The compare-and-set change: matches only the frequency the policy saw (``seen``), so of two
# concurrent recordings that decide the same step, one applies it and the other finds
# nothing to do (one history row, not two).
CHANGE_FREQUENCY: Update = (
    COURSES.update()
    .where(
        COURSES.c.id == bindparam("course_id"),
        COURSES.c.status == "active",
        COURSES.c.sessions_per_week == bindparam("seen"),
    )
    .values(
        sessions_per_week=bindparam("sessions_per_week"),
        phase=bindparam("phase"),
        updated_at=bindparam("changed_at"),
    )
)
CHANGE_COLUMNS = (
    "id",
    "course_id",
    "sessions_per_week",
    "phase",
    "changed_at",
    "source",
    "rule",
    "reason",
)
ADD_CHANGE = CHANGES.insert().values(_bound(CHANGES, CHANGE_COLUMNS))


def _among(column: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` among the list bound as ``name``: one array parameter on PostgreSQL (one
    prepared statement whatever the length), an expanding IN on SQLite."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(Uuid())))
    return column.in_(bindparam(name, expanding=True))


_DIALECTS = ("postgresql", "sqlite")
# The stored observations among ``ids``: what a replay is compared with.
STORED: dict[str, Select[Any]] = {
    d: select(OBSERVATIONS).where(_among(OBSERVATIONS.c.id, "ids", d)) for d in _DIALECTS
}
# Those of ``course_ids`` that are the patient's courses; session → course for ``session_ids``.
OWN_COURSES: dict[str, Select[Any]] = {
    d: select(COURSES.c.id).where(
        COURSES.c.patient_id == bindparam("patient_id"), _among(COURSES.c.id, "course_ids", d)
    )
    for d in _DIALECTS
}
OWN_SESSIONS: dict[str, Select[Any]] = {
    d: select(SESSIONS.c.id, SESSIONS.c.course_id).where(
        SESSIONS.c.patient_id == bindparam("patient_id"),
        _among(SESSIONS.c.id, "session_ids", d),
    )
    for d in _DIALECTS
}
PATIENT_EXISTS = select(exists().where(PATIENTS.c.id == bindparam("patient_id")).label("found"))

# ---------------------------------------------------------------------------------------------
# PostgreSQL: the same parts composed into single statements (data-modifying CTEs)


def _window_arrays(values: Select[Any]) -> Select[Any]:
    """The window's values as five arrays, in the order of ``values`` (its ORDER BY: the
    aggregates read the ordered subquery, one sort for all): asyncpg decodes them in C."""
    window = values.subquery("windowed")
    arrays = select(
        func.array_agg(window.c.instrument).label("instruments"),
        func.array_agg(window.c.recorded_at).label("times"),
        func.array_agg(window.c.id).label("ids"),
        func.array_agg(window.c.value).label("vals"),
        func.array_agg(window.c.course_id).label("course_ids"),
    )
    return cast("Select[Any]", arrays)


def courses_with_window(courses: Select[Any], *, active_only: bool) -> Select[Any]:
    """One statement: the courses (a row each, newest first), each row with the window's
    arrays: the values of those courses (``active_only``: of the active ones)."""
    found = courses.cte("courses")
    owners = select(found.c.id, found.c.start_date)
    if active_only:
        owners = owners.where(found.c.status == "active")
    arrays = _window_arrays(values_of(owners.subquery("owners"))).subquery("window_values")
    return (
        select(*found.c, *arrays.c)
        .select_from(found.join(arrays, true()))
        .order_by(found.c.start_date.desc(), found.c.id)
    )


# Every course of the patient (attribution reads them all) with the active ones' values.
PG_PATIENT_INPUTS = courses_with_window(PATIENT_COURSES, active_only=True)
PG_NAMED_INPUTS = courses_with_window(NAMED_COURSE, active_only=False)


def _audit_from(condition: ColumnElement[bool]) -> Insert:
    """The request's audit row (AUDIT_PREFIX), written only if ``condition``."""
    row = select(*_bound(AUDIT, AUDIT_COLUMNS, AUDIT_PREFIX).values()).where(condition)
    return AUDIT.insert().from_select(list(AUDIT_COLUMNS), row)


def _proposed() -> Any:
    """The policy's changes, one array element each (empty arrays when none)."""
    arrays = {
        "id": postgresql.ARRAY(Uuid()),
        "course_id": postgresql.ARRAY(Uuid()),
        "seen": postgresql.ARRAY(COURSES.c.sessions_per_week.type),
        "sessions_per_week": postgresql.ARRAY(COURSES.c.sessions_per_week.type),
        "phase": postgresql.ARRAY(CHANGES.c.phase.type),
        "source": postgresql.ARRAY(CHANGES.c.source.type),
        "rule": postgresql.ARRAY(CHANGES.c.rule.type),
        "reason": postgresql.ARRAY(CHANGES.c.reason.type),
    }
    params = [bindparam(f"change_{name}", type_=kind) for name, kind in arrays.items()]
    return func.unnest(*params).table_valued(*arrays).render_derived(name="proposed")


def _record_one() -> Select[Any]:
    """One observation unless its id is taken; only if it was stored, the request's audit row
    and the policy's changes (each a compare-and-set). Returns whether it was stored."""
    stored = INSERT_OBSERVATION["postgresql"].cte("stored")
    was_stored = exists(select(stored.c.id))
    audited = _audit_from(was_stored).cte("audited")
    proposed = _proposed()
    changed = (
        COURSES.update()
        .where(
            COURSES.c.id == proposed.c.course_id,
            COURSES.c.status == "active",
            COURSES.c.sessions_per_week == proposed.c.seen,
            was_stored,
        )
        .values(
            sessions_per_week=proposed.c.sessions_per_week,
            phase=proposed.c.phase,
            updated_at=bindparam("received_at"),
        )
        .returning(COURSES.c.id)
        .cte("changed")
    )
    history_rows = select(
        proposed.c.id,
        proposed.c.course_id,
        proposed.c.sessions_per_week,
        proposed.c.phase,
        bindparam("received_at"),
        proposed.c.source,
        proposed.c.rule,
        proposed.c.reason,
    ).join_from(proposed, changed, changed.c.id == proposed.c.course_id)
    history = CHANGES.insert().from_select(list(CHANGE_COLUMNS), history_rows).cte("history")
    return select(was_stored.label("stored")).add_cte(audited, changed, history)


PG_RECORD_ONE = _record_one()


def _insert_batch() -> Select[Any]:
    """Every item (bulk.insert_unnest) unless its id is taken, and the request's audit row if
    the patient exists: the ids stored, and whether the audit row was written (if not, the
    patient is unknown: nothing was stored either, as a new item would have failed the
    foreign key)."""
    stored = bulk.insert_unnest().cte("stored")
    patient_exists = exists().where(PATIENTS.c.id == bindparam("patient_id"))
    audited = _audit_from(patient_exists).returning(AUDIT.c.id).cte("audited")
    return select(
        func.array(select(stored.c.id).scalar_subquery()).label("stored_ids"),
        exists(select(audited.c.id)).label("audited"),
    )


PG_INSERT_BATCH = _insert_batch()

# A compare-and-set change and its history row, in one statement.
_changed = CHANGE_FREQUENCY.returning(COURSES.c.id).cte("changed")
PG_CHANGE_FREQUENCY = (
    select(func.count().label("applied"))
    .select_from(select(_changed.c.id).subquery())
    .add_cte(
        CHANGES.insert()
        .from_select(
            list(CHANGE_COLUMNS),
            select(
                bindparam("id", type_=Uuid),
                _changed.c.id,
                bindparam("sessions_per_week"),
                bindparam("phase", type_=CHANGES.c.phase.type),
                bindparam("changed_at", type_=UTCDateTime()),
                bindparam("source", type_=CHANGES.c.source.type),
                bindparam("rule", type_=CHANGES.c.rule.type),
                bindparam("reason", type_=CHANGES.c.reason.type),
            ),
        )
        .cte("history")
    )
)

# A trend read: its course and window, and the request's audit row when there is a course.
_trend = TREND_COURSE.cte("courses")
_trend_window = _window_arrays(values_of(_trend)).subquery("window_values")
PG_TREND_INPUTS = (
    select(*_trend.c, *_trend_window.c)
    .select_from(_trend.join(_trend_window, true()))
    .add_cte(_audit_from(exists(select(_trend.c.id))).cte("audited"))
)
