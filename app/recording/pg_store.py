"""The PostgreSQL store: the pipeline's statements compiled once for asyncpg and run on the
plain pool (app/core/pg.py), each its own transaction unless a batch asks for one.

Measured on the benchmark box, a statement through a SQLAlchemy session costs 0.8–0.9 ms of
the worker's CPU, the same on a pooled asyncpg connection 0.2 ms; and the pipeline's
composed statements (``PG_RECORD_ONE``, ``PG_INSERT_BATCH``, ``PG_APPLY``, ``PG_TREND_INPUTS``,
each with the outbox events of what it writes) do in one
round trip what the session store does in several. So a POST is two statements (the inputs,
then one atomic write of the observation, its audit row and the policy's changes), a batch
one transaction of two or three, a trend read one.

The request's audit row is written by these statements with the work it records, and
``AccessRecord.written`` set once that committed, so the request's hooks do not write it
again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

import asyncpg
from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from app.analytics.repository import PolicyInputs, Value, course_of, window_params
from app.audit.service import audit_event
from app.auth.rules import AccessRecord
from app.core.pg import Connection, Pool, connection
from app.observations.bulk import unnest_columns
from app.patients.errors import PatientNotFound
from app.recording import statements as sql
from app.recording.store import (
    NOTHING,
    PlannedChange,
    PlannedEvent,
    SharedQueries,
    TrendInputs,
    Writes,
)

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class RawStatement:
    """A Core statement compiled once for asyncpg: its SQL and the order of its parameters.

    Values go to asyncpg as they are (uuids, floats, text, aware datetimes and lists of them,
    which it encodes itself), so no SQLAlchemy bind processing is applied; the statements'
    own literals (LIMIT 1, 'active') keep the values compiled in.
    """

    __slots__ = ("defaults", "names", "sql")

    def __init__(self, statement: Executable) -> None:
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=_DIALECT))
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.defaults: dict[str, Any] = dict(compiled.params)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        defaults = self.defaults
        return [params[n] if n in params else defaults[n] for n in self.names]


_PATIENT_INPUTS = RawStatement(sql.PG_PATIENT_INPUTS)
_NAMED_INPUTS = RawStatement(sql.PG_NAMED_INPUTS)
_RECORD_ONE = RawStatement(sql.PG_RECORD_ONE)
_INSERT_BATCH = RawStatement(sql.PG_INSERT_BATCH)
_APPLY = RawStatement(sql.PG_APPLY)
_TREND_INPUTS = RawStatement(sql.PG_TREND_INPUTS)


@cache
def raw(statement: Executable) -> RawStatement:
    """A statement shared with the session store, compiled once (Core statements hash by
    identity: each of the module-level objects is compiled the first time it runs)."""
    return RawStatement(statement)


def values_of_arrays(row: Mapping[str, Any]) -> list[Value]:
    """The window's values of a row carrying them as six arrays (NULL when none)."""
    arrays = (
        row["instruments"],
        row["times"],
        row["ids"],
        row["vals"],
        row["course_ids"],
        row["weights"],
    )
    if arrays[0] is None:
        return []
    return list(zip(*arrays, strict=True))


def audit_params(access: AccessRecord, status: int) -> dict[str, Any]:
    """The request's audit row as the statements' ``audit_`` parameters."""
    event = audit_event(access, status)
    return {sql.AUDIT_PREFIX + name: value for name, value in event.items()}


def change_arrays(changes: Sequence[PlannedChange]) -> dict[str, list[Any]]:
    """``PG_RECORD_ONE``'s ``change_*`` parameters: one array element per change."""
    return {
        "change_id": [c.id for c in changes],
        "change_course_id": [c.course_id for c in changes],
        "change_seen": [c.seen for c in changes],
        "change_sessions_per_week": [c.values["sessions_per_week"] for c in changes],
        "change_phase": [c.values["phase"] for c in changes],
        "change_source": [c.values["source"] for c in changes],
        "change_rule": [c.values["rule"] for c in changes],
        "change_reason": [c.values["reason"] for c in changes],
    }


def recommendation_arrays(writes: Writes) -> dict[str, list[Any]]:
    """The ``rec_*`` parameters: one array element per new recommendation."""
    recs = writes.recommendations
    return {
        "rec_course_id": [r.course_id for r in recs],
        "rec_seen_action": [r.seen_action for r in recs],
        "rec_seen_rule": [r.seen_rule for r in recs],
        "rec_action": [r.action for r in recs],
        "rec_rule": [r.rule for r in recs],
    }


def event_arrays(events: Sequence[PlannedEvent]) -> dict[str, list[Any]]:
    """The ``event_*`` parameters: one array element per proposed event."""
    return {
        "event_id": [e.row["id"] for e in events],
        "event_type": [e.row["type"] for e in events],
        "event_patient_id": [e.row["patient_id"] for e in events],
        "event_course_id": [e.row["course_id"] for e in events],
        "event_occurred_at": [e.row["occurred_at"] for e in events],
        "event_payload": [e.row["payload"] for e in events],
        "event_gate": [e.gate for e in events],
        "event_gate_id": [e.gate_id for e in events],
    }


def _inputs(records: Sequence[Any]) -> PolicyInputs:
    """Rows of ``courses_with_window``: a course each, every row with the same arrays."""
    if not records:
        return PolicyInputs()
    return PolicyInputs([course_of(r) for r in records], values_of_arrays(records[0]))


@dataclass(slots=True)
class PgUnit(SharedQueries):
    conn: Connection
    access: AccessRecord  # the request's: its row is written with the work
    received_at: datetime
    audited: bool = False  # the audit row is part of what this unit wrote
    dialect: str = "postgresql"

    async def _fetch(self, statement: RawStatement, params: Mapping[str, Any]) -> list[Any]:
        result: list[Any] = await self.conn.fetch(statement.sql, *statement.args(params))
        return result

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        return await self._fetch(raw(statement), params)

    async def policy_inputs(
        self,
        patient_id: uuid.UUID,
        course_id: uuid.UUID | None = None,
        new: Sequence[tuple[str, datetime]] = (),
    ) -> PolicyInputs:
        params = {
            "patient_id": patient_id,
            "course_id": course_id,
            **window_params(self.dialect, self.received_at, new),
        }
        statement = _PATIENT_INPUTS if course_id is None else _NAMED_INPUTS
        return _inputs(await self._fetch(statement, params))

    async def write_one(
        self, row: Mapping[str, Any], changes: Sequence[PlannedChange], writes: Writes = NOTHING
    ) -> bool:
        params = {
            **row,
            **audit_params(self.access, 201),
            **change_arrays(changes),
            **recommendation_arrays(writes),
            **event_arrays(writes.events),
        }
        try:
            records = await self._fetch(_RECORD_ONE, params)
        except asyncpg.ForeignKeyViolationError as exc:
            raise PatientNotFound(row["patient_id"]) from exc
        stored = bool(records[0]["stored"])
        self.audited = stored
        return stored

    async def write_batch(
        self,
        patient_id: uuid.UUID,
        received_at: datetime,
        items: Sequence[Mapping[str, Any]],
        events: Sequence[PlannedEvent] = (),
    ) -> set[uuid.UUID]:
        params: dict[str, Any] = {
            "patient_id": patient_id,
            "received_at": received_at,
            **unnest_columns(items),  # in id order: overlapping batches cannot deadlock
            **audit_params(self.access, 200),
            **event_arrays(events),
        }
        try:
            records = await self._fetch(_INSERT_BATCH, params)
        except asyncpg.ForeignKeyViolationError as exc:
            raise PatientNotFound(patient_id) from exc
        if not records[0]["audited"]:  # the patient is unknown: nothing was stored either
            raise PatientNotFound(patient_id)
        self.audited = True
        return set(records[0]["stored_ids"])

    async def apply(self, changes: Sequence[PlannedChange], writes: Writes = NOTHING) -> int:
        if not changes and not writes:
            return 0  # nothing to write: no round trip
        params = {
            "received_at": self.received_at,
            **change_arrays(changes),
            **recommendation_arrays(writes),
            **event_arrays(writes.events),
        }
        applied: int = (await self._fetch(_APPLY, params))[0]["applied"]
        return applied

    async def trend_inputs(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None
    ) -> TrendInputs | None:
        params = {
            "patient_id": patient_id,
            "course_id": course_id,
            **window_params(self.dialect, self.received_at),
            **audit_params(self.access, 200),
        }
        records = await self._fetch(_TREND_INPUTS, params)
        if not records:
            return None
        self.audited = True
        course, facts = course_of(records[0])
        return TrendInputs(course, facts.first_session_at, values_of_arrays(records[0]))


@dataclass(frozen=True, slots=True)
class PgStore:
    """The store of a request on PostgreSQL without an Idempotency-Key."""

    pool: Pool
    access: AccessRecord  # set by `authorize` on every API request
    received_at: datetime

    @asynccontextmanager
    async def unit(self, *, transaction: bool = False) -> AsyncIterator[PgUnit]:
        async with connection(self.pool) as conn:
            unit = PgUnit(conn, self.access, self.received_at)
            if transaction:
                async with conn.transaction():
                    yield unit
            else:
                yield unit
        if unit.audited:
            self.access.written = True  # committed: the request's hooks skip it
