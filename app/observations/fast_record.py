"""Recording one observation on PostgreSQL in two statements, on the plain asyncpg pool.

``POST /patients/{id}/observations`` is the service's most frequent request (every app and
device posts scores). Through a SQLAlchemy session it took BEGIN, the INSERT, the policy's two
reads, the audit INSERT and COMMIT: six round trips and about 2 ms of the worker's CPU. Here
it is two statements, each its own transaction:

1. ``pg_reads.ACTIVE_COURSES`` reads what the frequency policy needs: the patient's active
   courses with their facts, and the values of their windows as three arrays.
2. The policy runs in Python on those values plus the new one, and ``_RECORD`` writes, in one
   atomic statement: the observation, the request's audit row and the frequency changes the
   policy decided (each a compare-and-set on the frequency the policy saw, as in
   ``AnalyticsRepository.change_frequency``, and only if the observation was stored).

So the observation, its audit row and the change it causes commit together or not at all, as
on the general path. Reading before writing sees what READ COMMITTED showed the general path
(other requests' committed values); the compare-and-set guards the one decision that depends
on it. The statements are the SQL of the general path's constants (app/analytics/repository.py,
app/audit/service.py, app/observations/bulk.py), written out once for the raw connection.

The general path (ObservationService.record) still handles what this one does not: SQLite,
a course or session reference (checked first), an Idempotency-Key (stored with the write), and
a client id that is already stored (a replay or a clash, told apart by reading it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import Request

from app.analytics import pg_reads
from app.analytics.repository import FrequencyChangeValues, PolicyCourse
from app.analytics.service import frequency_changes, group_points
from app.audit.service import AUDIT_COLUMNS, audit_event
from app.auth.rules import AccessRecord
from app.core.db import new_id
from app.core.pg import Pool, connection
from app.idempotency.middleware import CLAIM
from app.observations.schemas import ObservationCreate
from app.patients.errors import PatientNotFound

# The observation unless its id is taken; then, only if it was stored, its audit row and the
# policy's changes ($21–$27: one array element per change; empty arrays when none). Returns
# whether the observation was stored.
_RECORD = """
WITH stored AS (
    INSERT INTO observations (id, patient_id, instrument, value, recorded_at, received_at,
                              context, source, note)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
audited AS (
    INSERT INTO audit_events (id, at, token_id, role, action, resource_type, resource_id,
                              patient_id, outcome, status, request_id)
    SELECT $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20 FROM stored
),
proposed AS (
    SELECT * FROM unnest($21::uuid[], $22::uuid[], $23::float8[], $24::float8[], $25::text[],
                         $26::text[], $27::text[])
        AS p(id, course_id, seen, sessions_per_week, phase, rule, reason)
),
changed AS (
    UPDATE courses c
       SET sessions_per_week = p.sessions_per_week, phase = p.phase, updated_at = $6
      FROM proposed p
     WHERE c.id = p.course_id AND c.status = 'active' AND c.sessions_per_week = p.seen
       AND EXISTS (SELECT FROM stored)
    RETURNING c.id
),
history AS (
    INSERT INTO frequency_changes (id, course_id, sessions_per_week, phase, changed_at, source,
                                   rule, reason)
    SELECT p.id, p.course_id, p.sessions_per_week, p.phase, $6, 'policy', p.rule, p.reason
      FROM proposed p JOIN changed ON changed.id = p.course_id
)
SELECT EXISTS (SELECT FROM stored)
"""


@dataclass(frozen=True, slots=True)
class FastRecorder:
    """Records one observation in two statements; built per request by the router."""

    pool: Pool
    access: AccessRecord  # the request's audit record: its row is written with the observation

    async def record(
        self, patient_id: uuid.UUID, data: ObservationCreate, received_at: datetime
    ) -> dict[str, Any] | None:
        """The stored observation's columns, or None when its id was already stored (nothing
        was written: the general path tells a replay from a clash). 404 for an unknown patient:
        the INSERT's foreign key, as on the general path."""
        row = data.model_dump() | {
            "id": data.id or new_id(),
            "patient_id": patient_id,
            "received_at": received_at,
        }
        async with connection(self.pool) as conn:
            courses, rows = await pg_reads.active_courses(conn, patient_id)
            changes = _changes(courses, rows, row, received_at)
            event = audit_event(self.access, 201)
            try:
                stored = await conn.fetchval(
                    _RECORD,
                    *(row[name] for name in _OBSERVATION_PARAMS),
                    *(event[name] for name in AUDIT_COLUMNS),
                    *_change_arrays(changes),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise PatientNotFound(patient_id) from exc
        if not stored:
            return None
        self.access.written = True
        return row


def fast_recorder(request: Request) -> FastRecorder | None:
    """This request's two-statement recorder, when it can take that path: on PostgreSQL, and
    without an Idempotency-Key (whose row must commit with the write, on the general path)."""
    pool: Pool | None = getattr(request.app.state, "raw_pool", None)
    access: AccessRecord | None = getattr(request.state, "access", None)
    if pool is None or access is None or CLAIM in request.scope.get("state", {}):
        return None
    return FastRecorder(pool, access)


_OBSERVATION_PARAMS = (
    "id",
    "patient_id",
    "instrument",
    "value",
    "recorded_at",
    "received_at",
    "context",
    "source",
    "note",
)


def _changes(
    courses: pg_reads.Inputs, rows: pg_reads.Rows, row: dict[str, Any], now: datetime
) -> list[tuple[PolicyCourse, FrequencyChangeValues]]:
    """The policy's decisions for the courses read, counting the new value."""
    if not courses:
        return []
    rows.append((row["instrument"], row["recorded_at"], row["value"]))
    if len(rows) > 1 and rows[-1][1] < rows[-2][1]:  # a late value: keep the time order
        rows.sort(key=lambda r: r[1])
    return frequency_changes(courses, group_points(rows), now)


def _change_arrays(changes: list[tuple[PolicyCourse, FrequencyChangeValues]]) -> list[list[Any]]:
    """``_RECORD``'s $21–$27: one array per column of the proposed changes."""
    columns: list[list[Any]] = [[] for _ in range(7)]
    for course, change in changes:
        values = (
            new_id(),
            course.id,
            course.sessions_per_week,
            change["sessions_per_week"],
            change["phase"],
            change["rule"],
            change["reason"],
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
