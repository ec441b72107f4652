"""The session store: the pipeline's statements executed on the request's AsyncSession.

It serves SQLite, and PostgreSQL requests carrying an Idempotency-Key (whose key row must
commit in the request's transaction). Its work is part of the request's one transaction,
which the session dependency commits (app/core/db.py), so the request's audit row is written
by the request's own commit hook, with the rest, and nothing here writes it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics import repository as reads
from app.analytics.repository import PolicyInputs, read_inputs
from app.core.errors import is_foreign_key_violation
from app.observations import bulk
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


@dataclass(slots=True)
class SessionUnit(SharedQueries):
    session: AsyncSession
    received_at: datetime
    dialect: str = ""

    def __post_init__(self) -> None:
        self.dialect = self.session.get_bind().dialect.name

    async def rows(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Mapping[str, Any]]:
        result = await self.session.execute(statement, dict(params))
        return cast("Sequence[Mapping[str, Any]]", result.mappings().all())

    async def policy_inputs(
        self,
        patient_id: uuid.UUID,
        course_id: uuid.UUID | None = None,
        new: Sequence[tuple[str, datetime]] = (),
    ) -> PolicyInputs:
        now = self.received_at
        if course_id is None:
            params = {"patient_id": patient_id}
            return await read_inputs(
                self.session, reads.PATIENT_COURSES, reads.ACTIVE_VALUES, params, now, new
            )
        params = {"patient_id": patient_id, "course_id": course_id}
        return await read_inputs(
            self.session, reads.NAMED_COURSE, reads.NAMED_VALUES, params, now, new
        )

    async def write_one(
        self, row: Mapping[str, Any], changes: Sequence[PlannedChange], writes: Writes = NOTHING
    ) -> bool:
        try:
            result = await self.session.execute(sql.INSERT_OBSERVATION[self.dialect], dict(row))
        except IntegrityError as exc:
            if is_foreign_key_violation(exc):
                raise PatientNotFound(row["patient_id"]) from exc
            raise
        if result.first() is None:
            return False
        await self._apply(changes, writes, stored={row["id"]})
        return True

    async def write_batch(
        self,
        patient_id: uuid.UUID,
        received_at: datetime,
        items: Sequence[Mapping[str, Any]],
        events: Sequence[PlannedEvent] = (),
    ) -> set[uuid.UUID]:
        if not await self.patient_exists(patient_id):  # a 404 whatever the items
            raise PatientNotFound(patient_id)
        if not items:
            return set()
        if self.dialect == "postgresql":
            params: dict[str, Any] = {"patient_id": patient_id, "received_at": received_at}
            params.update(bulk.unnest_columns(items))
            stored = set((await self.session.scalars(bulk.insert_unnest(), params)).all())
        else:
            # One row's INSERT for every item (insertmanyvalues: a few multi-row statements,
            # each RETURNING the ids it stored).
            batch = {"patient_id": patient_id, "received_at": received_at}
            rows = [{**item, **batch} for item in items]
            stored = set((await self.session.execute(bulk.insert_row(), rows)).scalars().all())
        await self._events(events, {"stored": stored})
        return stored

    async def apply(self, changes: Sequence[PlannedChange], writes: Writes = NOTHING) -> int:
        return await self._apply(changes, writes, stored=set())

    async def _apply(
        self, changes: Sequence[PlannedChange], writes: Writes, stored: set[uuid.UUID]
    ) -> int:
        changed: set[uuid.UUID] = set()
        for change in changes:
            params = {"course_id": change.course_id, "seen": change.seen}
            params |= {"changed_at": self.received_at, **change.values}
            result = await self.session.execute(sql.CHANGE_FREQUENCY, params)
            if cast("CursorResult[Any]", result).rowcount != 1:
                continue  # the course moved on meanwhile
            await self.session.execute(sql.ADD_CHANGE, {**params, "id": change.id})
            changed.add(change.course_id)
        recommended: set[uuid.UUID] = set()
        for rec in writes.recommendations:
            params = {"rec_course_id": rec.course_id, "new_action": rec.action}
            params |= {"new_rule": rec.rule, "changed_at": self.received_at}
            if rec.seen_action is None:
                first = sql.FIRST_RECOMMENDATION[self.dialect]
                written = (await self.session.execute(first, params)).first() is not None
            else:
                params |= {"seen_action": rec.seen_action, "seen_rule": rec.seen_rule}
                result = await self.session.execute(sql.REPLACE_RECOMMENDATION, params)
                written = cast("CursorResult[Any]", result).rowcount == 1
            if written:
                recommended.add(rec.course_id)
        gates = {"stored": stored, "changed": changed, "recommended": recommended}
        await self._events(writes.events, gates)
        return len(changed)

    async def _events(
        self, events: Sequence[PlannedEvent], gates: Mapping[str, set[uuid.UUID]]
    ) -> None:
        """The events whose gate passed, in the order given (one multi-row INSERT)."""
        rows = [dict(e.row) for e in events if e.gate_id in gates.get(e.gate, ())]
        if rows:
            await self.session.execute(sql.ADD_EVENT, rows)

    async def trend_inputs(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None
    ) -> TrendInputs | None:
        params: dict[str, Any] = {"patient_id": patient_id, "course_id": course_id}
        inputs = await read_inputs(
            self.session, reads.TREND_COURSE, reads.TREND_VALUES, params, self.received_at
        )
        if not inputs.courses:
            return None
        course, facts = inputs.courses[0]
        return TrendInputs(course, facts.first_session_at, inputs.values)


@dataclass(frozen=True, slots=True)
class SessionStore:
    """The store of a request that runs in its SQLAlchemy session's transaction."""

    session: AsyncSession
    received_at: datetime

    @asynccontextmanager
    async def unit(self, *, transaction: bool = False) -> AsyncIterator[SessionUnit]:
        # The request's transaction is already one unit: it commits or rolls back whole.
        yield SessionUnit(self.session, self.received_at)
