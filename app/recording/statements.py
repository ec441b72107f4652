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
  finds nothing to do (one history row, not two);
- the compare-and-set recommendation: a course's new action and rule are stored only over the
  ones the plan read (inserted only if none was stored);
- the outbox: each event row (app/outbox/events.py) is written by the statement that writes
  its change, gated on that change having been written (``Gate``: the observation stored, the
  course's frequency changed, its recommendation stored), so an event exists if and only if
  its change committed.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Select,
    String,
    Update,
    Uuid,
    and_,
    any_,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from app.analytics.repository import (
    CHANGES,
    COURSES,
    NAMED_COURSE,
    PATIENT_COURSES,
    RECOMMENDATIONS,
    SESSIONS,
    TREND_COURSE,
    reduced_values_of,
)
from app.audit.models import AuditEvent
from app.core.db import UTCDateTime, table_of
from app.observations import bulk
from app.outbox.events import ADD_EVENT, EVENT_COLUMNS, OUTBOX

__all__ = ["ADD_EVENT"]  # the session store writes the events with it
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

# The compare-and-set recommendation, in two halves: over the one read, or the first one.
_RECOMMENDATION_VALUES = {
    "action": bindparam("new_action", type_=RECOMMENDATIONS.c.action.type),
    "rule": bindparam("new_rule", type_=RECOMMENDATIONS.c.rule.type),
    "changed_at": bindparam("changed_at", type_=UTCDateTime()),
}
REPLACE_RECOMMENDATION: Update = (
    RECOMMENDATIONS.update()
    .where(
        RECOMMENDATIONS.c.course_id == bindparam("rec_course_id", type_=Uuid()),
        RECOMMENDATIONS.c.action == bindparam("seen_action"),
        RECOMMENDATIONS.c.rule.is_not_distinct_from(
            bindparam("seen_rule", type_=RECOMMENDATIONS.c.rule.type)
        ),
    )
    .values(_RECOMMENDATION_VALUES)
)
FIRST_RECOMMENDATION: dict[str, Insert] = {
    name: dialect.insert(RECOMMENDATIONS)
    .values(course_id=bindparam("rec_course_id", type_=Uuid()), **_RECOMMENDATION_VALUES)
    .on_conflict_do_nothing(index_elements=[RECOMMENDATIONS.c.course_id])
    .returning(RECOMMENDATIONS.c.course_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


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
    """The window's values as six arrays, in the order of ``values`` (its ORDER BY: the
    aggregates read the ordered subquery, one sort for all): asyncpg decodes them in C."""
    window = values.subquery("windowed")
    arrays = select(
        func.array_agg(window.c.instrument).label("instruments"),
        func.array_agg(window.c.recorded_at).label("times"),
        func.array_agg(window.c.id).label("ids"),
        func.array_agg(window.c.value).label("vals"),
        func.array_agg(window.c.course_id).label("course_ids"),
        func.array_agg(window.c.n).label("weights"),
    )
    return cast("Select[Any]", arrays)


def courses_with_window(courses: Select[Any], *, active_only: bool) -> Select[Any]:
    """One statement: the courses (a row each, newest first), each row with the window's
    arrays: the values of those courses (``active_only``: of the active ones)."""
    found = courses.cte("courses")
    owners = select(found.c.id, found.c.start_date)
    if active_only:
        owners = owners.where(found.c.status == "active")
    values = reduced_values_of(owners.subquery("owners"), "postgresql")
    arrays = _window_arrays(values).subquery("window_values")
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


def _array_params(prefix: str, arrays: dict[str, Any], ordinality: str | None = None) -> Any:
    """``unnest`` of one array parameter per column (``prefix`` + its name)."""
    params = [bindparam(f"{prefix}{name}", type_=kind) for name, kind in arrays.items()]
    valued = func.unnest(*params).table_valued(*arrays, with_ordinality=ordinality)
    return valued.render_derived(name=prefix.rstrip("_") + "s")


def _proposed_recommendations() -> Any:
    text = postgresql.ARRAY(String())
    arrays = {
        "course_id": postgresql.ARRAY(Uuid()),
        "seen_action": text,
        "seen_rule": text,
        "action": text,
        "rule": text,
    }
    return _array_params("rec_", arrays)


def _proposed_events() -> Any:
    arrays = {
        "id": postgresql.ARRAY(Uuid()),
        "type": postgresql.ARRAY(OUTBOX.c.type.type),
        "patient_id": postgresql.ARRAY(Uuid()),
        "course_id": postgresql.ARRAY(Uuid()),
        "occurred_at": postgresql.ARRAY(OUTBOX.c.occurred_at.type),
        "payload": postgresql.ARRAY(OUTBOX.c.payload.type),
        "gate": postgresql.ARRAY(String()),
        "gate_id": postgresql.ARRAY(Uuid()),
    }
    return _array_params("event_", arrays, ordinality="ordinal")


def _events_cte(
    stored: Any | None = None, changed: Any | None = None, recommended: Any | None = None
) -> Any:
    """The proposed events (``event_*`` arrays) whose gate passed, in the order given."""
    events = _proposed_events()
    passed: list[ColumnElement[bool]] = []
    for gate, cte, column in (
        ("stored", stored, "id"),
        ("changed", changed, "id"),
        ("recommended", recommended, "course_id"),
    ):
        if cte is not None:
            passed.append(and_(events.c.gate == gate, events.c.gate_id.in_(select(cte.c[column]))))
    rows = (
        select(*(events.c[name] for name in EVENT_COLUMNS))
        .where(or_(*passed) if passed else false())
        .order_by(events.c.ordinal)
    )
    return OUTBOX.insert().from_select(list(EVENT_COLUMNS), rows).cte("events")


def _tail(gate: ColumnElement[bool], stored: Any | None = None) -> tuple[Any, list[Any]]:
    """Only if ``gate``: the policy's changes (each a compare-and-set) with their history rows,
    the new recommendations (each a compare-and-set), and the events whose change was written
    (``stored``: the observations stored, for theirs). The changed courses' CTE and every CTE.
    """
    proposed = _proposed()
    changed = (
        COURSES.update()
        .where(
            COURSES.c.id == proposed.c.course_id,
            COURSES.c.status == "active",
            COURSES.c.sessions_per_week == proposed.c.seen,
            gate,
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
    recs = _proposed_recommendations()
    replaced = (
        RECOMMENDATIONS.update()
        .where(
            RECOMMENDATIONS.c.course_id == recs.c.course_id,
            recs.c.seen_action.is_not(None),
            RECOMMENDATIONS.c.action == recs.c.seen_action,
            RECOMMENDATIONS.c.rule.is_not_distinct_from(recs.c.seen_rule),
            gate,
        )
        .values(action=recs.c.action, rule=recs.c.rule, changed_at=bindparam("received_at"))
        .returning(RECOMMENDATIONS.c.course_id)
        .cte("rec_replaced")
    )
    first_recs = _proposed_recommendations()
    first = (
        postgresql.insert(RECOMMENDATIONS)
        .from_select(
            ["course_id", "action", "rule", "changed_at"],
            select(
                first_recs.c.course_id,
                first_recs.c.action,
                first_recs.c.rule,
                bindparam("received_at", type_=UTCDateTime()),
            ).where(first_recs.c.seen_action.is_(None), gate),
        )
        .on_conflict_do_nothing(index_elements=[RECOMMENDATIONS.c.course_id])
        .returning(RECOMMENDATIONS.c.course_id)
        .cte("rec_first")
    )
    recommended = union_all(select(replaced.c.course_id), select(first.c.course_id)).subquery(
        "recommended"
    )
    events = _events_cte(stored, changed, recommended)
    return changed, [history, replaced, first, events]


def _record_one() -> Select[Any]:
    """One observation unless its id is taken; only if it was stored, the request's audit row,
    the policy's changes and recommendations (each a compare-and-set) and the events of what
    was written. Returns whether it was stored."""
    stored = INSERT_OBSERVATION["postgresql"].cte("stored")
    was_stored = exists(select(stored.c.id))
    audited = _audit_from(was_stored).cte("audited")
    changed, ctes = _tail(was_stored, stored)
    return select(was_stored.label("stored")).add_cte(audited, changed, *ctes)


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
    ).add_cte(_events_cte(stored=stored))


PG_INSERT_BATCH = _insert_batch()


def _apply() -> Select[Any]:
    """The policy's changes and recommendations (each a compare-and-set) and the events of
    what was written: how many changes applied."""
    changed, ctes = _tail(true())
    return (
        select(func.count().label("applied"))
        .select_from(select(changed.c.id).subquery())
        .add_cte(changed, *ctes)
    )


PG_APPLY = _apply()

# A trend read: its course and window, and the request's audit row when there is a course.
_trend = TREND_COURSE.cte("courses")
_trend_window = _window_arrays(reduced_values_of(_trend, "postgresql")).subquery("window_values")
PG_TREND_INPUTS = (
    select(*_trend.c, *_trend_window.c)
    .select_from(_trend.join(_trend_window, true()))
    .add_cte(_audit_from(exists(select(_trend.c.id))).cte("audited"))
)
