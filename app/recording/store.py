"""What the recording service needs of a database: the ``RecordingStore`` protocol and the
values that cross it (the policy's inputs are the analytics repository's: PolicyInputs).

Two stores implement it (app/recording/pg_store.py, app/recording/session_store.py), running
the same statements (app/recording/statements.py). The service (app/recording/service.py)
holds the one rule order: read the inputs, add the new values, plan with the pure
analytics, write.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

from sqlalchemy import Executable

from app.analytics.repository import FrequencyChangeValues, PolicyCourse, PolicyInputs, Value
from app.outbox.events import EventRow
from app.recording import statements as sql


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """A frequency change the policy decided: applied only if the course is still active at
    the frequency ``seen``."""

    id: uuid.UUID
    course_id: uuid.UUID
    seen: float
    values: FrequencyChangeValues


@dataclass(frozen=True, slots=True)
class PlannedRecommendation:
    """A course's new recommendation (action and rule), stored only if the course's stored one
    is still the one the plan read (``seen_action`` None: none was stored)."""

    course_id: uuid.UUID
    seen_action: str | None
    seen_rule: str | None
    action: str
    rule: str | None


# What an event waits for: its observation stored (the id), its course's frequency changed
# or its course's recommendation stored (the course id).
Gate = Literal["stored", "changed", "recommended"]


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An outbox event, written only if what it reports was written (its ``gate``)."""

    row: EventRow
    gate: Gate
    gate_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Writes:
    """What a plan writes besides the values and the frequency changes: recommendations and
    events."""

    recommendations: Sequence[PlannedRecommendation] = ()
    events: Sequence[PlannedEvent] = ()

    def __bool__(self) -> bool:
        return bool(self.recommendations or self.events)


NOTHING = Writes()


class TrendInputs(NamedTuple):
    course: PolicyCourse
    first_session_at: datetime | None
    values: list[Value]


class RecordingUnit(Protocol):
    """One connection's worth of a recording (for a batch, one transaction)."""

    async def policy_inputs(
        self,
        patient_id: uuid.UUID,
        course_id: uuid.UUID | None = None,
        new: Sequence[tuple[str, datetime]] = (),
    ) -> PolicyInputs:
        """Every course of the patient (newest first) with the values of the active ones; or
        the one named, active or not, with its values."""

    async def write_one(
        self, row: Mapping[str, Any], changes: Sequence[PlannedChange], writes: Writes = NOTHING
    ) -> bool:
        """Atomically: the observation unless its id is taken; only if it was stored, the
        request's audit row (where the store writes it), ``changes`` and ``writes`` (each
        event only if its gate passed). Whether it was stored. PatientNotFound for an unknown
        patient (the foreign key), nothing written."""

    async def write_batch(
        self,
        patient_id: uuid.UUID,
        received_at: datetime,
        items: Sequence[Mapping[str, Any]],
        events: Sequence[PlannedEvent] = (),
    ) -> set[uuid.UUID]:
        """The items (each with bulk.ITEM_COLUMNS) unless their id is taken, with the
        request's audit row (where the store writes it) and the ``events`` of the items
        stored: the ids stored. PatientNotFound for an unknown patient, nothing written."""

    async def apply(self, changes: Sequence[PlannedChange], writes: Writes = NOTHING) -> int:
        """Each change as a compare-and-set with its history row, each recommendation as a
        compare-and-set, and the events whose gate passed: how many changes applied."""

    async def stored(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The stored observations (every column, by name) of those of ``ids`` that exist."""

    async def patient_exists(self, patient_id: uuid.UUID) -> bool: ...

    async def references(
        self,
        patient_id: uuid.UUID,
        course_ids: Collection[uuid.UUID],
        session_ids: Collection[uuid.UUID],
    ) -> tuple[set[uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        """Those of ``course_ids`` that are the patient's, and session → course for those of
        ``session_ids`` that are the patient's."""

    async def trend_inputs(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None
    ) -> TrendInputs | None:
        """The course of a trend read (the one named if it is the patient's, else the active
        one, else the latest) with its first session and its values; None when there is
        none. The request's audit row is written with it where the store writes it."""


class RecordingStore(Protocol):
    @property
    def received_at(self) -> datetime:
        """The request's receipt time: its "now" throughout."""

    def unit(self, *, transaction: bool = False) -> AbstractAsyncContextManager[RecordingUnit]:
        """A unit of work; ``transaction``: its writes commit together (a batch)."""


class SharedQueries:
    """The unit methods whose statement is the same on every store: written once, over the
    one thing each store does its own way (``rows``: run a statement, rows by column label).
    """

    dialect: str

    async def rows(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    async def stored(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        if not ids:
            return {}
        found = await self.rows(sql.STORED[self.dialect], {"ids": list(ids)})
        return {row["id"]: dict(row) for row in found}

    async def patient_exists(self, patient_id: uuid.UUID) -> bool:
        found = await self.rows(sql.PATIENT_EXISTS, {"patient_id": patient_id})
        return bool(found[0]["found"])

    async def references(
        self,
        patient_id: uuid.UUID,
        course_ids: Collection[uuid.UUID],
        session_ids: Collection[uuid.UUID],
    ) -> tuple[set[uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        courses: set[uuid.UUID] = set()
        sessions: dict[uuid.UUID, uuid.UUID] = {}
        if course_ids:
            params = {"patient_id": patient_id, "course_ids": list(course_ids)}
            found = await self.rows(sql.OWN_COURSES[self.dialect], params)
            courses = {row["id"] for row in found}
        if session_ids:
            params = {"patient_id": patient_id, "session_ids": list(session_ids)}
            found = await self.rows(sql.OWN_SESSIONS[self.dialect], params)
            sessions = {row["id"]: row["course_id"] for row in found}
        return courses, sessions
