"""Analytics' two hottest reads, as single statements on the plain asyncpg pool (PostgreSQL).

Recording an observation (app/observations/fast_record.py) and reading a patient's trends need
the same things: course rows with their policy facts (``CourseFacts``) and the patient's values
from the course window on. Through SQLAlchemy these were two statements of about 0.2 ms of
Python each; here they are one, with the values as three arrays (instrument, recorded_at,
value) that asyncpg decodes in C. The SQL is that of AnalyticsRepository's constants
(``_ACTIVE_COURSES``, ``_TRENDS_COURSE``, ``_NAMED_COURSE``, ``_VALUES_SINCE``), written out.

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
from app.core.pg import Connection

# A course row (PolicyCourse's columns, in order) and its facts, as in _facts_of: the latest
# history row, the first session, the latest session's adverse events.
_COURSE_WITH_FACTS = """
    SELECT c.id, c.patient_id, c.start_date, c.policy, c.status, c.adjustment,
           c.sessions_per_week, c.sessions_done, c.max_sessions, c.created_at,
           latest_change.source AS last_change_source,
           latest_change.changed_at AS last_change_at,
           (SELECT min(s.performed_at) FROM treatment_sessions s
             WHERE s.course_id = c.id) AS first_session_at,
           (SELECT s.adverse_events FROM treatment_sessions s
             WHERE s.course_id = c.id
             ORDER BY s.performed_at DESC, s.number DESC LIMIT 1) AS latest_adverse_events
      FROM courses c
      LEFT JOIN LATERAL (
            SELECT f.source, f.changed_at FROM frequency_changes f
             WHERE f.course_id = c.id
             ORDER BY f.changed_at DESC, f.id DESC LIMIT 1
      ) latest_change ON true
"""

# The patient's values from the earliest start of the `courses` CTE's windows ($2 days before
# its start date, UTC midnight), oldest first, as three arrays; and each course with them.
_WITH_WINDOW = """
windowed AS (
    SELECT o.instrument, o.recorded_at, o.value
      FROM observations o
     WHERE o.patient_id = $1
       AND o.recorded_at >= (SELECT (min(start_date) - $2::int)::timestamp AT TIME ZONE 'UTC'
                               FROM courses)
     ORDER BY o.recorded_at
)
SELECT k.id, k.patient_id, k.start_date, k.policy, k.status, k.adjustment,
       k.sessions_per_week, k.sessions_done, k.max_sessions,
       k.last_change_source, k.last_change_at, k.first_session_at, k.latest_adverse_events,
       w.instruments, w.times, w.vals
  FROM courses k
 CROSS JOIN (SELECT array_agg(instrument) AS instruments, array_agg(recorded_at) AS times,
                    array_agg(value) AS vals
               FROM windowed) w
 ORDER BY k.start_date DESC, k.created_at DESC
"""

# The patient's active courses, newest first (the ones new data concerns).
ACTIVE_COURSES = f"""
WITH courses AS ({_COURSE_WITH_FACTS} WHERE c.patient_id = $1 AND c.status = 'active'),
{_WITH_WINDOW}"""

# The course a trend read is about: the one named ($3, if it is the patient's), else the
# active one, else the latest.
TRENDS_COURSE = f"""
WITH courses AS ({_COURSE_WITH_FACTS}
     WHERE c.patient_id = $1 AND ($3::uuid IS NULL OR c.id = $3::uuid)
     ORDER BY (c.status = 'active') DESC, c.start_date DESC, c.created_at DESC
     LIMIT 1),
{_WITH_WINDOW}"""

Inputs = list[tuple[PolicyCourse, CourseFacts]]
Rows = list[tuple[str, datetime, float]]


def window_days() -> int:
    """The widest window of the installed policies (days before a course's start)."""
    return max(p.window_days_before_start for p in policies().values())


async def active_courses(conn: Connection, patient_id: uuid.UUID) -> tuple[Inputs, Rows]:
    """The patient's active courses with their facts, and the values of their windows."""
    return _read(await conn.fetch(ACTIVE_COURSES, patient_id, window_days()))


async def trends_course(
    conn: Connection, patient_id: uuid.UUID, course_id: uuid.UUID | None
) -> tuple[Inputs, Rows]:
    """The course of a trend read (none when the patient has none, or not the one named)."""
    return _read(await conn.fetch(TRENDS_COURSE, patient_id, window_days(), course_id))


def _read(records: Sequence[Any]) -> tuple[Inputs, Rows]:
    courses = []
    for record in records:
        values = tuple(record)
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
