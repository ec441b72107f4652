"""Recording observations on PostgreSQL on the plain asyncpg pool: one in two statements, a
batch in one transaction of two or three.

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
ANALYTICS.md asks ("in the same transaction") and as on the general path. Writing first and
returning the policy's inputs would save the first round trip, but the change would then commit
after the observation: not done without the product side's word. Reading before writing sees
what READ COMMITTED showed the general path (other requests' committed values); the
compare-and-set guards the one decision that depends on it.

A batch (``FastRecorder.record_batch``) cannot decide its policy changes before writing: which
of its ids are new is only known once they are inserted. So it is one transaction whose first
statement (``_INSERT``) writes the items unless their id is taken and the request's audit row,
and returns, as they were just before, what the policy reads
(``pg_reads.written_then_active_courses``); the policy counts the stored items' values, and a
change it makes is a compare-and-set in the same transaction (``_CHANGE_FREQUENCY``). The
stored rows of the ids it skipped are read last. BEGIN, the INSERT and COMMIT in the common
case: the patient's existence is the INSERT's foreign key, or, when every id was taken, the
audit row's condition.

The general path (ObservationService.record, record_batch) still handles what this one does
not: SQLite, a course or session reference (checked first), an Idempotency-Key (stored with
the write), and for a single POST a client id that is already stored (a replay or a clash,
told apart by reading it). The statements are the SQL of the general path's constants
(app/analytics/repository.py, app/audit/service.py, app/observations/bulk.py), written out once
for the raw connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import Request

from app.analytics import pg_reads
from app.analytics.repository import FrequencyChangeValues, PolicyCourse
from app.analytics.service import frequency_changes, group_points
from app.audit.service import INSERT_EVENT_INTO, audit_values
from app.auth.rules import AccessRecord
from app.core.db import new_id
from app.core.pg import Connection, Pool, connection
from app.idempotency.middleware import CLAIM
from app.observations.bulk import unnest_columns
from app.observations.schemas import ObservationCreate
from app.patients.errors import PatientNotFound

# (The statements are put together from constant fragments only: the S608 noqa.)

# The observation unless its id is taken; then, only if it was stored, its audit row and the
# policy's changes ($21–$27: one array element per change; empty arrays when none). Returns
# whether the observation was stored.
_RECORD = f"""
WITH stored AS (
    INSERT INTO observations (id, patient_id, instrument, value, recorded_at, received_at,
                              context, source, note)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
audited AS (
    {INSERT_EVENT_INTO}
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
"""  # noqa: S608

# Every item of a batch (bulk.insert_unnest()'s SQL, written out: $4–$12 the arrays of
# bulk.unnest_columns(), $3 the receipt time) unless its id is taken, and the request's audit
# row if the patient exists; then what the policy reads. Every row ends with the ids stored
# and whether the audit row was (if not, the patient is unknown: nothing was stored either,
# as a new item would have failed the foreign key).
_INSERT = pg_reads.written_then_active_courses(
    f"""stored AS (
    INSERT INTO observations (id, patient_id, instrument, value, recorded_at, received_at,
                              course_id, session_id, context, source, note)
    SELECT items.id, $1, items.instrument, items.value, items.recorded_at, $3,
           items.course_id, items.session_id, items.context, items.source, items.note
      FROM unnest($4::uuid[], $5::varchar(40)[], $6::float8[], $7::timestamptz[], $8::uuid[],
                  $9::uuid[], $10::varchar(10)[], $11::varchar(10)[], $12::text[])
           AS items(id, instrument, value, recorded_at, course_id, session_id, context, source,
                    note)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
audited AS (
    {INSERT_EVENT_INTO}
    SELECT $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23
     WHERE EXISTS (SELECT FROM patients WHERE id = $1)
    RETURNING id
)""",  # noqa: S608
    "ARRAY(SELECT id FROM stored) AS stored_ids, EXISTS (SELECT FROM audited) AS audited",
)

# The stored observations among the ids $1: what a replay is compared on.
_STORED = """
SELECT id, patient_id, instrument, value, recorded_at, course_id, session_id, context, source,
       note
  FROM observations
 WHERE id = ANY($1::uuid[])
"""

# One policy change, as AnalyticsRepository.change_frequency makes it: the UPDATE only matches
# the frequency the policy saw ($6), and the history row ($1) is written only if it matched.
_CHANGE_FREQUENCY = """
WITH changed AS (
    UPDATE courses
       SET sessions_per_week = $3, phase = $4, updated_at = $5
     WHERE id = $2 AND status = 'active' AND sessions_per_week = $6
    RETURNING id
)
INSERT INTO frequency_changes (id, course_id, sessions_per_week, phase, changed_at, source,
                               rule, reason)
SELECT $1, changed.id, $3, $4, $5, 'policy', $7, $8 FROM changed
"""

# record_batch's answer: the ids it stored, and the stored rows (by column) of the others.
Batch = tuple[set[uuid.UUID], dict[uuid.UUID, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class FastRecorder:
    """Records one observation in two statements, or a batch in one transaction, on the plain
    pool; built per request by the router."""

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
            try:
                stored = await conn.fetchval(
                    _RECORD,
                    *(row[name] for name in _OBSERVATION_PARAMS),
                    *audit_values(self.access, 201),
                    *_change_arrays(changes),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise PatientNotFound(patient_id) from exc
        if not stored:
            return None
        self.access.written = True
        return row

    async def record_batch(
        self, patient_id: uuid.UUID, items: Sequence[Mapping[str, Any]], received_at: datetime
    ) -> Batch:
        """Store the patient's ``items`` (each with every column of ``bulk.ITEM_COLUMNS``)
        unless their id is already stored, with the request's audit row and the policy's
        changes, in one transaction: the ids that were new, and the stored rows (by column
        name) of the others. 404 for an unknown patient, with nothing written."""
        arrays = unnest_columns(items).values()  # in id order, as insert_many
        async with connection(self.pool) as conn, conn.transaction():
            try:
                records = await conn.fetch(
                    _INSERT,
                    patient_id,
                    pg_reads.window_days(),
                    received_at,
                    *arrays,
                    *audit_values(self.access, 200),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise PatientNotFound(patient_id) from exc
            if not records[0]["audited"]:
                raise PatientNotFound(patient_id)
            inserted: set[uuid.UUID] = set(records[0]["stored_ids"])
            if inserted:  # one policy evaluation for the whole batch, counting its values
                courses, rows = pg_reads.read_inputs(records)
                rows += [_point(item) for item in items if item["id"] in inserted]
                await _apply_policy(conn, courses, rows, received_at)
            taken = [item["id"] for item in items if item["id"] not in inserted]
            stored = {r["id"]: dict(r) for r in await conn.fetch(_STORED, taken)} if taken else {}
        self.access.written = True  # committed
        return inserted, stored


def fast_recorder(request: Request) -> FastRecorder | None:
    """This request's recorder on the raw pool, when it can take that path: on PostgreSQL, and
    without an Idempotency-Key (whose row must commit with the write, on the general path)."""
    pool: Pool | None = getattr(request.app.state, "raw_pool", None)
    access: AccessRecord | None = getattr(request.state, "access", None)
    if pool is None or access is None or CLAIM in request.scope.get("state", {}):
        return None
    return FastRecorder(pool, access)


# _RECORD's $1–$9.
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


def _point(item: Mapping[str, Any]) -> tuple[str, datetime, float]:
    return item["instrument"], item["recorded_at"], item["value"]


async def _apply_policy(
    conn: Connection, courses: pg_reads.Inputs, rows: pg_reads.Rows, now: datetime
) -> None:
    """The policy's changes to the courses read, given the window's values and the new ones
    (``rows``, in any order), each a compare-and-set on the frequency the policy saw."""
    if not courses:
        return
    rows.sort(key=_recorded_at)  # new values are usually the latest: little to move
    for course, change in frequency_changes(courses, group_points(rows), now):
        await conn.execute(
            _CHANGE_FREQUENCY,
            new_id(),
            course.id,
            change["sessions_per_week"],
            change["phase"],
            now,
            course.sessions_per_week,
            change["rule"],
            change["reason"],
        )


def _recorded_at(row: tuple[str, datetime, float]) -> datetime:
    return row[1]
