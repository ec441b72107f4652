"""The one recording pipeline: observations (one or a batch), sessions that trigger the
policy, and trend reads, on whichever store serves the request.

One rule order on every store: read the policy's inputs (every course of the patient, the
active ones' values), attribute each new value to its course, add the new values, plan with
the pure analytics for the courses they concern, write (the observation, its audit row and
the planned changes commit together, each change a compare-and-set on the frequency the plan
saw). "Now" is the request's receipt time throughout: the observation's ``received_at`` and
the changes' ``changed_at``.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.analytics.attribution import CourseSpan, ambiguity, candidates
from app.analytics.repository import FrequencyChangeValues, PolicyInputs, Value, value_order
from app.analytics.service import CourseTrends, group_points, policy_of, trends_of, verdict
from app.analytics.trends import window_opens
from app.core.db import new_id, new_ids
from app.core.errors import Unprocessable, field_error, validation_errors
from app.courses.errors import CourseNotFound
from app.courses.schedule import phase_for
from app.observations.errors import InvalidReference, ObservationIdConflict
from app.observations.schemas import BatchResult, BatchStatus, ObservationCreate
from app.outbox import events
from app.patients.errors import PatientNotFound
from app.recording.store import (
    PlannedChange,
    PlannedEvent,
    PlannedRecommendation,
    RecordingStore,
    RecordingUnit,
    Writes,
)

# What a client sends; two posts of one id are the same observation when these agree (and the
# course, when the client named one: see same_content).
CONTENT_FIELDS = (
    "instrument",
    "value",
    "recorded_at",
    "session_id",
    "context",
    "source",
    "note",
)

_uuid = TypeAdapter(uuid.UUID)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the policy decided: frequency changes, and what else to write with them (new
    recommendations, and the events of both)."""

    changes: list[PlannedChange] = field(default_factory=list)
    writes: Writes = field(default_factory=Writes)


def plan(
    inputs: PolicyInputs,
    new: Iterable[Value],
    now: datetime,
    concerned: Collection[uuid.UUID] | None = None,
) -> Plan:
    """The changes the policy makes to the active courses read (those ``concerned``: all
    when None), counting the ``new`` values (merged into the window in value order, as a
    later read would return them); and each course's recommendation where it differs from the
    one stored, with the events of both."""
    courses = [
        (course, facts)
        for course, facts in inputs.courses
        if course.status == "active" and (concerned is None or course.id in concerned)
    ]
    if not courses:
        return Plan()
    values = inputs.values
    for value in new:
        bisect.insort(values, value, key=value_order)
    changes = []
    recommendations = []
    planned_events = []
    for course, facts in courses:
        points = group_points(values, course.id)
        rec = verdict(course, facts, points, now, policy_of(course))
        if rec.apply:
            frequency = rec.recommended_sessions_per_week
            change: FrequencyChangeValues = {
                "sessions_per_week": frequency,
                "phase": phase_for(frequency),
                "source": "policy",
                "rule": rec.rule,
                "reason": rec.rationale,
            }
            planned = PlannedChange(new_id(), course.id, course.sessions_per_week, change)
            changes.append(planned)
            row = events.frequency_changed(
                patient_id=course.patient_id, course_id=course.id, change_id=planned.id,
                previous=course.sessions_per_week, sessions_per_week=frequency,
                phase=change["phase"], source="policy", rule=rec.rule, changed_at=now,
            )  # fmt: skip
            planned_events.append(PlannedEvent(row, "changed", course.id))
        if (rec.action, rec.rule) != (facts.last_action, facts.last_rule):
            recommendations.append(
                PlannedRecommendation(
                    course.id, facts.last_action, facts.last_rule, rec.action, rec.rule
                )
            )
            row = events.recommendation_changed(
                patient_id=course.patient_id, course_id=course.id, action=rec.action,
                rule=rec.rule, recommended_sessions_per_week=rec.recommended_sessions_per_week,
                current_sessions_per_week=course.sessions_per_week,
                previous_action=facts.last_action, previous_rule=facts.last_rule, at=now,
            )  # fmt: skip
            planned_events.append(PlannedEvent(row, "recommended", course.id))
    return Plan(changes, Writes(recommendations, planned_events))


def spans(inputs: PolicyInputs) -> list[CourseSpan]:
    """What attribution reads of the patient's courses."""
    return [
        CourseSpan(
            id=course.id,
            region=course.region,
            start_date=course.start_date,
            window_days=policy_of(course).window_days_before_start,
            ended_at=course.ended_at,
        )
        for course, _ in inputs.courses
    ]


def concerned_by(
    courses: Sequence[CourseSpan], course_id: uuid.UUID | None, recorded_at: datetime
) -> set[uuid.UUID]:
    """The courses a new value counts for: its own; without one, every course whose window
    holds it (a value stored without a course counts for each course whose window holds it)."""
    if course_id is not None:
        return {course_id}
    return {c.id for c in courses if recorded_at >= window_opens(c.start_date, c.window_days)}


def same_content(stored: Mapping[str, Any], patient_id: uuid.UUID, data: ObservationCreate) -> bool:
    """Whether a stored row is what the client sent (so a replay, not a clash of ids). A
    client that named no course sent whichever course the value was attributed to."""
    return (
        stored["patient_id"] == patient_id
        and all(stored[name] == getattr(data, name) for name in CONTENT_FIELDS)
        and (data.course_id is None or stored["course_id"] == data.course_id)
    )


def _value(row: Mapping[str, Any]) -> Value:
    return row["instrument"], row["recorded_at"], row["id"], row["value"], row["course_id"], 1


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
    course_id: uuid.UUID | None = None  # named, a session's, or attributed

    def row(self) -> dict[str, Any]:
        """The columns the item brings to its row (the store adds the patient and the receipt
        time): no model_dump per item."""
        data = self.data
        return {
            "id": self.id,
            "instrument": data.instrument,
            "value": data.value,
            "recorded_at": data.recorded_at,
            "course_id": self.course_id,
            "session_id": data.session_id,
            "context": data.context,
            "source": data.source,
            "note": data.note,
        }


class RecordingService:
    def __init__(self, store: RecordingStore) -> None:
        self.store = store
        self.received_at = store.received_at  # the request's "now"

    async def record(
        self, patient_id: uuid.UUID, data: ObservationCreate
    ) -> tuple[dict[str, Any], bool]:
        """Store one observation of an existing patient: (the stored row, whether it is new).

        A replayed client id with the same content returns the stored row; with different
        content (or another patient's) it is a conflict (409); an unknown patient is a 404
        (the INSERT's foreign key, not a look-up of its own).
        """
        now = self.received_at
        row = data.model_dump() | {
            "id": data.id or new_id(),
            "patient_id": patient_id,
            "received_at": now,
        }
        async with self.store.unit() as db:
            inputs = await db.policy_inputs(patient_id, new=[(data.instrument, data.recorded_at)])
            courses = spans(inputs)
            if data.course_id is not None or data.session_id is not None:
                row["course_id"] = await self._check_references(db, patient_id, data)
            else:
                row["course_id"] = _attribute(courses, data, ["body", "course_id"])
            concerned = concerned_by(courses, row["course_id"], data.recorded_at)
            planned = plan(inputs, [_value(row)], now, concerned)
            created = PlannedEvent(events.observation_created(row), "stored", row["id"])
            writes = Writes(planned.writes.recommendations, [created, *planned.writes.events])
            if await db.write_one(row, planned.changes, writes):
                return row, True
            existing = (await db.stored([row["id"]])).get(row["id"])
            if existing is not None and same_content(existing, patient_id, data):
                return existing, False
            if not await db.patient_exists(patient_id):  # a 404 before a 409
                raise PatientNotFound(patient_id)
        raise ObservationIdConflict()

    async def record_batch(self, patient_id: uuid.UUID, items: list[Any]) -> BatchResult:
        """Validate each item on its own and store the valid ones together: one transaction
        with the request's audit row and the policy's changes."""
        outcomes, candidates = _parse(items)
        now = self.received_at
        new = [(c.data.instrument, c.data.recorded_at) for c in candidates]
        async with self.store.unit(transaction=True) as db:
            inputs = await db.policy_inputs(patient_id, new=new)
            courses = spans(inputs)
            if any(c.data.course_id or c.data.session_id for c in candidates):
                if not await db.patient_exists(patient_id):  # a 404 before any item's error
                    raise PatientNotFound(patient_id)
                candidates = await _without_foreign_references(db, patient_id, candidates)
            candidates = _attributed(courses, candidates)
            candidates = _without_repeated_ids(candidates)
            rows = [c.row() for c in candidates]
            batch = {"patient_id": patient_id, "received_at": now}
            created = [
                PlannedEvent(events.observation_created(r | batch), "stored", r["id"]) for r in rows
            ]
            stored_ids = await db.write_batch(patient_id, now, rows, created)
            if stored_ids:  # one policy evaluation for the whole batch, counting its values
                added = [_value(r) for r in rows if r["id"] in stored_ids]
                concerned = set().union(*(concerned_by(courses, v[4], v[1]) for v in added))
                planned = plan(inputs, added, now, concerned)
                await db.apply(planned.changes, planned.writes)
            existing = await db.stored([c.id for c in candidates if c.id not in stored_ids])
        # Ids that were already stored (by an earlier request or a concurrent one).
        for candidate in candidates:
            if candidate.id in stored_ids:
                continue
            stored = existing.get(candidate.id)
            if stored is not None and same_content(stored, patient_id, candidate.data):
                candidate.outcome.status = "duplicate"
            else:
                candidate.outcome.reject([field_error(["id"], ObservationIdConflict.msg)])
        return BatchResult.model_validate({"results": [o.result() for o in outcomes]})

    async def after_session(self, patient_id: uuid.UUID, course_id: uuid.UUID) -> None:
        """Run the policy on a course whose session was just logged (in the same transaction):
        the session is among the facts, no value is new."""
        async with self.store.unit() as db:
            inputs = await db.policy_inputs(patient_id, course_id)
            planned = plan(inputs, (), self.received_at)
            await db.apply(planned.changes, planned.writes)

    async def trends(
        self, patient_id: uuid.UUID, course_id: uuid.UUID | None
    ) -> CourseTrends | None:
        """The trends of the course asked for (default: the active course, else the latest);
        None when the patient has no course. 404 for an unknown patient or another's course.
        The patient is only looked up when no course answers."""
        async with self.store.unit() as db:
            found = await db.trend_inputs(patient_id, course_id)
            if found is None:
                if not await db.patient_exists(patient_id):
                    raise PatientNotFound(patient_id)
                if course_id is not None:
                    raise CourseNotFound(course_id)
                return None
        course, first_session_at, values = found
        points = group_points(values, course.id)
        return trends_of(course, first_session_at, points, self.received_at, policy_of(course))

    @staticmethod
    async def _check_references(
        db: RecordingUnit, patient_id: uuid.UUID, data: ObservationCreate
    ) -> uuid.UUID:
        """The course an observation naming a course or a session belongs to (a session's
        course when it names only the session); 404 or 422 for a reference not the
        patient's."""
        courses, sessions = await db.references(
            patient_id,
            [data.course_id] if data.course_id else [],
            [data.session_id] if data.session_id else [],
        )
        error: tuple[str, str] | None = None
        if data.course_id is not None and data.course_id not in courses:
            error = ("course_id", InvalidReference.COURSE_MSG)
        elif (session_error := _session_error(sessions, data)) is not None:
            error = ("session_id", session_error)
        if error is not None:
            if not await db.patient_exists(patient_id):  # a 404 first
                raise PatientNotFound(patient_id)
            raise InvalidReference(*error)
        if data.course_id is not None:
            return data.course_id
        assert data.session_id is not None
        return sessions[data.session_id]


def _attribute(
    courses: Sequence[CourseSpan], data: ObservationCreate, loc: list[str | int]
) -> uuid.UUID | None:
    """The one course a value naming none belongs to (None when no course fits); a 422 on
    ``loc`` when several do: the client must say which."""
    found = candidates(courses, data.instrument, data.recorded_at)
    if len(found) > 1:
        raise Unprocessable.at(loc, ambiguity(len(found)))
    return found[0] if found else None


def _attributed(courses: Sequence[CourseSpan], candidates_: list[_Candidate]) -> list[_Candidate]:
    """Each batch item with its course (named, a session's, or attributed); those several
    courses fit are rejected with the single POST's error."""
    kept = []
    for candidate in candidates_:
        data = candidate.data
        if data.course_id is None and data.session_id is None:
            found = candidates(courses, data.instrument, data.recorded_at)
            if len(found) > 1:
                candidate.outcome.reject([field_error(["course_id"], ambiguity(len(found)))])
                continue
            candidate.course_id = found[0] if found else None
        kept.append(candidate)
    return kept


def _client_id(item: Any) -> uuid.UUID | None:
    """The id of a raw batch item, if it carries a valid one (reported even when rejected)."""
    if not isinstance(item, dict) or item.get("id") is None:
        return None
    try:
        return _uuid.validate_python(item["id"])
    except ValidationError:
        return None


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
    db: RecordingUnit, patient_id: uuid.UUID, candidates: list[_Candidate]
) -> list[_Candidate]:
    """Reject items naming another patient's course or session: one look-up per kind."""
    course_ids = {c.data.course_id for c in candidates if c.data.course_id is not None}
    session_ids = {c.data.session_id for c in candidates if c.data.session_id is not None}
    courses, sessions = await db.references(patient_id, course_ids, session_ids)
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
            continue
        if data.session_id is not None:
            candidate.course_id = sessions[data.session_id]
        elif data.course_id is not None:
            candidate.course_id = data.course_id
        kept.append(candidate)
    return kept


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


__all__: Sequence[str] = ["RecordingService", "plan", "same_content"]
