from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.service import AnalyticsService
from app.core.db import new_id, new_ids, utcnow
from app.core.errors import (
    Unprocessable,
    field_error,
    is_foreign_key_violation,
    validation_errors,
)
from app.observations.catalogue import CATALOGUE, Instrument
from app.observations.errors import InvalidReference, ObservationIdConflict
from app.observations.fast_record import FastRecorder
from app.observations.models import Observation
from app.observations.repository import ObservationRepository
from app.observations.schemas import (
    BatchResult,
    BatchStatus,
    ObservationCreate,
)
from app.patients.errors import PatientNotFound
from app.patients.service import PatientService

# What a client sends; two posts of one id are the same observation when these agree.
CONTENT_FIELDS = (
    "instrument",
    "value",
    "recorded_at",
    "course_id",
    "session_id",
    "context",
    "source",
    "note",
)

_uuid = TypeAdapter(uuid.UUID)


def list_instruments() -> Sequence[Instrument]:
    return CATALOGUE


class _StoredRow(Protocol):
    """A stored observation's columns by name: a SQLAlchemy row's ``_mapping``, or a dict of a
    raw row (app/observations/fast_record.py)."""

    def __getitem__(self, name: str, /) -> Any: ...


def _same_content(stored: _StoredRow, patient_id: uuid.UUID, data: ObservationCreate) -> bool:
    """Whether a stored row is what the client sent (so a replay, not a clash of ids)."""
    return stored["patient_id"] == patient_id and all(
        stored[name] == getattr(data, name) for name in CONTENT_FIELDS
    )


def _client_id(item: Any) -> uuid.UUID | None:
    """The id of a raw batch item, if it carries a valid one (reported even when rejected)."""
    if not isinstance(item, dict) or item.get("id") is None:
        return None
    try:
        return _uuid.validate_python(item["id"])
    except ValidationError:
        return None


@dataclass(slots=True)
class _Outcome:
    """The result of one batch item, settled step by step."""

    index: int
    id: uuid.UUID | None
    status: BatchStatus = "created"
    errors: list[dict[str, Any]] = field(default_factory=list)
    copy_of: _Outcome | None = None  # an earlier, identical item of this batch

    def reject(self, errors: list[dict[str, Any]]) -> None:
        self.status = "rejected"
        self.errors = errors

    def result(self) -> dict[str, Any]:
        """This item's entry of the response, as plain data (BatchResult validates the whole
        response once)."""
        if self.copy_of is not None and self.copy_of.status == "rejected":
            # An identical copy shares the fate of the item it repeats.
            self.reject(self.copy_of.errors)
        if self.status == "rejected":
            return {"index": self.index, "id": self.id, "status": "rejected", "errors": self.errors}
        # `errors` left out, so the response omits it.
        return {"index": self.index, "id": self.id, "status": self.status}


@dataclass(slots=True)
class _Candidate:
    """A valid batch item that is still on its way to being stored."""

    outcome: _Outcome
    id: uuid.UUID
    data: ObservationCreate


class ObservationService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = ObservationRepository(session)

    async def record(
        self, patient_id: uuid.UUID, data: ObservationCreate, fast: FastRecorder | None = None
    ) -> tuple[Row[Any] | dict[str, Any], bool]:
        """Store one observation of an existing patient: (the stored row, whether it is new).

        A replayed client id with the same content returns the stored row; with different
        content (or another patient's) it is a conflict.

        With ``fast`` (PostgreSQL), an observation naming no course or session is two
        statements on the raw pool (app/observations/fast_record.py). Otherwise the common
        case is three statements: the INSERT, then the policy's two reads. Either way the
        patient's existence is the INSERT's foreign key, not a look-up of its own.
        """
        if fast is not None and data.course_id is None and data.session_id is None:
            recorded = await fast.record(patient_id, data, utcnow())
            if recorded is not None:
                return recorded, True
            # The id was already stored: a replay or a clash, told apart below.
        await self._check_references(patient_id, data)
        row = self._row(patient_id, data, utcnow())
        try:
            stored = await self.repo.insert_one(row)
        except IntegrityError as exc:
            if is_foreign_key_violation(exc):  # the one reference not checked beforehand
                raise PatientNotFound(patient_id) from exc
            raise
        if stored is not None:
            await AnalyticsService(self.session).after_recording(patient_id)
            return stored, True
        existing = await self.repo.get(row["id"])
        if existing is None or not _same_content(existing._mapping, patient_id, data):
            # An unknown patient is a 404, not a 409.
            await PatientService(self.session).get(patient_id)
            raise ObservationIdConflict()
        return existing, False

    async def record_batch(
        self, patient_id: uuid.UUID, items: list[Any], fast: FastRecorder | None = None
    ) -> BatchResult:
        """Validate each item on its own and store the valid ones with one INSERT.

        With ``fast`` (PostgreSQL), a batch naming no course or session is stored in one
        transaction on the raw pool (app/observations/fast_record.py), where the INSERT's
        foreign key answers for the patient. Otherwise the patient is looked up first: an
        unknown one is a 404 whatever its items.
        """
        outcomes, candidates = self._parse(items)
        existing: Mapping[uuid.UUID, _StoredRow]
        if fast is not None and candidates and not any(_references(c) for c in candidates):
            candidates = self._without_repeated_ids(candidates)
            rows = [_batch_item(c) for c in candidates]
            inserted, existing = await fast.record_batch(patient_id, rows, utcnow())
        else:
            await PatientService(self.session).get(patient_id)  # a 404 before any item's error
            candidates = await self._without_foreign_references(patient_id, candidates)
            candidates = self._without_repeated_ids(candidates)
            inserted, existing = await self._store_batch(patient_id, candidates)

        # Ids that were already stored (by an earlier request or a concurrent one).
        for candidate in candidates:
            if candidate.id in inserted:
                continue
            stored = existing.get(candidate.id)
            if stored is not None and _same_content(stored, patient_id, candidate.data):
                candidate.outcome.status = "duplicate"
            else:
                candidate.outcome.reject([field_error(["id"], ObservationIdConflict.msg)])
        return BatchResult.model_validate({"results": [o.result() for o in outcomes]})

    async def page(
        self,
        patient_id: uuid.UUID,
        *,
        instrument: str | None,
        since: datetime | None,
        until: datetime | None,
        course_id: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Observation], str | None]:
        if since is not None and until is not None and until <= since:
            raise Unprocessable.at(["query", "until"], "must be later than since")
        return await self.repo.page(
            patient_id,
            instrument=instrument,
            since=since,
            until=until,
            course_id=course_id,
            limit=limit,
            cursor=cursor,
        )

    @staticmethod
    def _row(
        patient_id: uuid.UUID,
        data: ObservationCreate,
        received_at: datetime,
        observation_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        return data.model_dump() | {
            "id": observation_id or data.id or new_id(),
            "patient_id": patient_id,
            "received_at": received_at,
        }

    async def _store_batch(
        self, patient_id: uuid.UUID, candidates: list[_Candidate]
    ) -> tuple[set[uuid.UUID], dict[uuid.UUID, _StoredRow]]:
        """The general path's storing: the ids that were new, and the stored rows of the
        others (by column name)."""
        items = [_batch_item(c) for c in candidates]
        inserted = await self.repo.insert_many(patient_id, utcnow(), items)
        if inserted:  # one policy evaluation for the whole batch
            await AnalyticsService(self.session).after_recording(patient_id)
        existing = await self.repo.get_many({c.id for c in candidates if c.id not in inserted})
        return inserted, {id_: row._mapping for id_, row in existing.items()}

    async def _check_references(self, patient_id: uuid.UUID, data: ObservationCreate) -> None:
        if data.course_id is not None:
            found = await self.repo.course_ids_of_patient(patient_id, {data.course_id})
            if not found:
                await PatientService(self.session).get(patient_id)  # a 404 first
                raise InvalidReference("course_id", InvalidReference.COURSE_MSG)
        if data.session_id is not None:
            sessions = await self.repo.session_courses_of_patient(patient_id, {data.session_id})
            error = _session_error(sessions, data)
            if error is not None:
                await PatientService(self.session).get(patient_id)  # a 404 first
                raise InvalidReference("session_id", error)

    @staticmethod
    def _parse(items: list[Any]) -> tuple[list[_Outcome], list[_Candidate]]:
        outcomes: list[_Outcome] = []
        candidates: list[_Candidate] = []
        server_ids = iter(new_ids(len(items)))  # for the items that bring none
        for index, item in enumerate(items):
            try:
                data = ObservationCreate.model_validate(item)
            except ValidationError as exc:
                outcome = _Outcome(index, _client_id(item))
                outcome.reject(validation_errors(exc.errors(include_input=False)))
                outcomes.append(outcome)
                continue
            # A server id is assigned now so that every result can name its observation.
            observation_id = data.id or next(server_ids)
            outcome = _Outcome(index, observation_id)
            outcomes.append(outcome)
            candidates.append(_Candidate(outcome, observation_id, data))
        return outcomes, candidates

    async def _without_foreign_references(
        self, patient_id: uuid.UUID, candidates: list[_Candidate]
    ) -> list[_Candidate]:
        """Reject items naming another patient's course or session: one look-up per kind."""
        course_ids = {c.data.course_id for c in candidates if c.data.course_id is not None}
        session_ids = {c.data.session_id for c in candidates if c.data.session_id is not None}
        courses = await self.repo.course_ids_of_patient(patient_id, course_ids)
        sessions = await self.repo.session_courses_of_patient(patient_id, session_ids)
        kept = []
        for candidate in candidates:
            data = candidate.data
            errors = []
            if data.course_id is not None and data.course_id not in courses:
                errors.append(field_error(["course_id"], InvalidReference.COURSE_MSG))
            if (session_error := _session_error(sessions, data)) is not None:
                errors.append(field_error(["session_id"], session_error))
            if errors:
                candidate.outcome.reject(errors)
            else:
                kept.append(candidate)
        return kept

    @staticmethod
    def _without_repeated_ids(candidates: list[_Candidate]) -> list[_Candidate]:
        """The first valid item with an id wins; a later identical copy is a duplicate and a
        later different one is rejected."""
        first: dict[uuid.UUID, _Candidate] = {}
        for candidate in candidates:
            winner = first.setdefault(candidate.id, candidate)
            if winner is candidate:
                continue
            if winner.data == candidate.data:
                candidate.outcome.status = "duplicate"
                candidate.outcome.copy_of = winner.outcome
            else:
                candidate.outcome.reject([field_error(["id"], ObservationIdConflict.msg)])
        return list(first.values())


def _session_error(sessions: dict[uuid.UUID, uuid.UUID], data: ObservationCreate) -> str | None:
    if data.session_id is None:
        return None
    course_id = sessions.get(data.session_id)
    if course_id is None:
        return InvalidReference.SESSION_MSG
    if data.course_id is not None and data.course_id != course_id:
        return InvalidReference.SESSION_COURSE_MSG
    return None


def _references(candidate: _Candidate) -> bool:
    """Whether an item names a course or a session (to be checked as the patient's)."""
    return candidate.data.course_id is not None or candidate.data.session_id is not None


def _batch_item(candidate: _Candidate) -> dict[str, Any]:
    """The columns a batch item brings to its row (the repository adds the patient and the
    receipt time): ``_row`` without a model_dump per item."""
    data = candidate.data
    return {
        "id": candidate.id,
        "instrument": data.instrument,
        "value": data.value,
        "recorded_at": data.recorded_at,
        "course_id": data.course_id,
        "session_id": data.session_id,
        "context": data.context,
        "source": data.source,
        "note": data.note,
    }
