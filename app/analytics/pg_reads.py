"""What the policy and the trend reads need, as single statements on the plain asyncpg pool
(PostgreSQL).

Recording an observation (app/observations/fast_record.py) and reading a patient's trends need
the same things: course rows with their policy facts (``CourseFacts``) and the patient's values
from the course window on. Through SQLAlchemy these were two statements of about 0.2 ms of
Python each; here they are parts of one, with the values as three arrays (instrument,
recorded_at, value) that asyncpg decodes in C: a single recording reads them first
(``ACTIVE_COURSES``), a batch's write returns them (``written_then_active_courses``), and a
trend read is one statement with its audit row (``TRENDS_COURSE``; of the facts it reads only
the first session: a trend read does not run the policy). The SQL is that of
AnalyticsRepository's constants (``_ACTIVE_COURSES``, ``_TRENDS_COURSE``, ``_NAMED_COURSE``,
``_VALUES_SINCE``), written out; the statements are put together from these constant fragments
only (no input is ever interpolated, hence the ``noqa: S608``).

The window is widened to the longest of the installed policies' ``window_days_before_start``:
the statement runs before the course, and so its policy, is known. Each trend keeps the values
of its own course's window (``trends._window``), so the extra values change nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.analytics.registry import policies
from app.analytics.repository import CourseFacts, PolicyCourse
from app.audit.service import INSERT_EVENT_INTO
from app.core.pg import Connection

# A course row: PolicyCourse's columns, in order.
_COURSE = """
    SELECT c.id, c.patient_id, c.start_date, c.policy, c.status, c.adjustment,
           c.sessions_per_week, c.sessions_done, c.max_sessions, c.created_at,"""
_FIRST_SESSION = """
           (SELECT min(s.performed_at) FROM treatment_sessions s
             WHERE s.course_id = c.id) AS first_session_at,"""

# A course row and its facts, as in _facts_of: the latest history row, the first session, the
# latest session's adverse events.
_COURSE_WITH_FACTS = f"""{_COURSE}
           latest_change.source AS last_change_source,
           latest_change.changed_at AS last_change_at,{_FIRST_SESSION}
           (SELECT s.adverse_events FROM treatment_sessions s
             WHERE s.course_id = c.id
             ORDER BY s.performed_at DESC, s.number DESC LIMIT 1) AS latest_adverse_events
      FROM courses c
      LEFT JOIN LATERAL (
            SELECT f.source, f.changed_at FROM frequency_changes f
             WHERE f.course_id = c.id
             ORDER BY f.changed_at DESC, f.id DESC LIMIT 1
      ) latest_change ON true
"""  # noqa: S608

# The same columns for a trend read, which needs only the first session (the baseline ends
# there): the policy's facts are NULL, not read (trends_course returns none of them).
_COURSE_WITH_FIRST_SESSION = f"""{_COURSE}
           NULL::varchar AS last_change_source,
           NULL::timestamptz AS last_change_at,{_FIRST_SESSION}
           NULL::json AS latest_adverse_events
      FROM courses c
"""

# The patient's values from the earliest start of the `courses` CTE's windows ($2 days before
# its start date, UTC midnight), oldest first, as three arrays.
_WINDOW = """
windowed AS (
    SELECT o.instrument, o.recorded_at, o.value
      FROM observations o
     WHERE o.patient_id = $1
       AND o.recorded_at >= (SELECT (min(start_date) - $2::int)::timestamp AT TIME ZONE 'UTC'
                               FROM courses)
     ORDER BY o.recorded_at
),
window_values AS (
    SELECT array_agg(instrument) AS instruments, array_agg(recorded_at) AS times,
           array_agg(value) AS vals
      FROM windowed
)"""

# A row of read_inputs(): the course's columns, its facts, the window's arrays.
_COLUMNS = """
       k.id, k.patient_id, k.start_date, k.policy, k.status, k.adjustment,
       k.sessions_per_week, k.sessions_done, k.max_sessions,
       k.last_change_source, k.last_change_at, k.first_session_at, k.latest_adverse_events,
       w.instruments, w.times, w.vals"""

_ORDER = "ORDER BY k.start_date DESC, k.created_at DESC"

# The patient's active courses, newest first (the ones new data concerns).
_ACTIVE = f"""
courses AS ({_COURSE_WITH_FACTS} WHERE c.patient_id = $1 AND c.status = 'active'),
{_WINDOW}"""
ACTIVE_COURSES = f"""
WITH {_ACTIVE}
SELECT {_COLUMNS}
  FROM courses k CROSS JOIN window_values w
 {_ORDER}"""  # noqa: S608

# The course a trend read is about: the one named ($3, if it is the patient's), else the
# active one, else the latest; and, when there is one, the request's audit row ($4–$14, in the
# order of app.audit.service.AUDIT_COLUMNS).
TRENDS_COURSE = f"""
WITH courses AS ({_COURSE_WITH_FIRST_SESSION}
     WHERE c.patient_id = $1 AND ($3::uuid IS NULL OR c.id = $3::uuid)
     ORDER BY (c.status = 'active') DESC, c.start_date DESC, c.created_at DESC
     LIMIT 1),
{_WINDOW},
audited AS (
    {INSERT_EVENT_INTO}
    SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 WHERE EXISTS (SELECT FROM courses)
)
SELECT {_COLUMNS}
  FROM courses k CROSS JOIN window_values w"""  # noqa: S608


def written_then_active_courses(writes: str, outcome: str) -> str:
    """One statement: a write's CTEs (``writes``, each ``name AS (...)``, with $1 the patient and
    $2 reserved for the window), then what the policy reads about the patient's active
    courses, as ``ACTIVE_COURSES`` would have read it just before the write (every part of a
    statement sees the same snapshot: the written rows are not among the values). One row per
    course, or one row of NULL course columns when there is none, each ending with the
    ``outcome`` columns (which read the write's CTEs)."""
    return f"""
WITH {writes},
{_ACTIVE}
SELECT {_COLUMNS}, {outcome}
  FROM (SELECT) one LEFT JOIN courses k ON true CROSS JOIN window_values w
 {_ORDER}"""  # noqa: S608


Inputs = list[tuple[PolicyCourse, CourseFacts]]
Rows = list[tuple[str, datetime, float]]


def window_days() -> int:
    """The widest window of the installed policies (days before a course's start)."""
    return max(p.window_days_before_start for p in policies().values())


async def active_courses(conn: Connection, patient_id: uuid.UUID) -> tuple[Inputs, Rows]:
    """The patient's active courses with their facts, and the values of their windows."""
    return read_inputs(await conn.fetch(ACTIVE_COURSES, patient_id, window_days()))


async def trends_course(
    conn: Connection,
    patient_id: uuid.UUID,
    course_id: uuid.UUID | None,
    audit_row: Sequence[object],
) -> tuple[tuple[PolicyCourse, datetime | None] | None, Rows]:
    """The course of a trend read with its first session (None when the patient has no
    course, or not the one named) and the window's values; the read's ``audit_row``
    (AUDIT_COLUMNS' values) is written when there is a course."""
    courses, rows = read_inputs(
        await conn.fetch(TRENDS_COURSE, patient_id, window_days(), course_id, *audit_row)
    )
    if not courses:
        return None, rows
    course, facts = courses[0]
    return (course, facts.first_session_at), rows


def read_inputs(records: Sequence[Any]) -> tuple[Inputs, Rows]:
    """The courses (skipping a row of NULL course columns) and the window's values, of rows
    of ``_COLUMNS`` (followed by anything)."""
    courses = []
    for record in records:
        values = tuple(record)
        if values[0] is None:  # written_then_active_courses() found no course
            continue
        events = values[12]  # json: asyncpg returns the text
        facts = CourseFacts(
            last_change_source=values[9],
            last_change_at=values[10],
            first_session_at=values[11],
            latest_adverse_events=tuple(json.loads(events)) if events else (),
        )
        courses.append((PolicyCourse(*values[:9]), facts))
    if not records:
        return courses, []
    first = records[0]  # every row carries the same arrays
    arrays = (first["instruments"] or (), first["times"] or (), first["vals"] or ())
    return courses, list(zip(*arrays, strict=True))
