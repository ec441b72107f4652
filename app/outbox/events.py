"""The events, written once: their types, their payloads, and the row that carries them.

Every writer of an event builds its row here (``event_row``) and stores it with ``ADD_EVENT``
(the session paths: the ORM services and the session store) or the PostgreSQL composite
statements that include the same rows (app/recording/statements.py). A payload is what every
receiver gets: ``{"id", "type", "occurred_at", "data"}``, where ``data`` holds ids and the
new values, never a name or free text (no notes, no reasons).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypedDict

from sqlalchemy import Insert, bindparam

from app.core.db import table_of
from app.outbox.models import OutboxEvent

EventType = Literal[
    "course.frequency_changed",
    "recommendation.changed",
    "course.status_changed",
    "observation.created",
]
EVENT_TYPES: tuple[EventType, ...] = (
    "course.frequency_changed",
    "recommendation.changed",
    "course.status_changed",
    "observation.created",
)

OUTBOX = table_of(OutboxEvent)
EVENT_COLUMNS = ("id", "type", "patient_id", "course_id", "occurred_at", "payload")
ADD_EVENT: Insert = OUTBOX.insert().values(
    {name: bindparam(name, type_=OUTBOX.c[name].type) for name in EVENT_COLUMNS}
)


class EventRow(TypedDict):
    id: uuid.UUID
    type: str
    patient_id: uuid.UUID
    course_id: uuid.UUID | None
    occurred_at: datetime
    payload: str


def _json(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(type(value).__name__)


def event_row(
    event_type: EventType,
    occurred_at: datetime,
    patient_id: uuid.UUID,
    course_id: uuid.UUID | None,
    data: Mapping[str, Any],
    event_id: uuid.UUID | None = None,
) -> EventRow:
    event_id = event_id or uuid.uuid4()
    body = {"id": event_id, "type": event_type, "occurred_at": occurred_at, "data": data}
    payload = json.dumps(body, default=_json, separators=(",", ":"))
    return EventRow(
        id=event_id,
        type=event_type,
        patient_id=patient_id,
        course_id=course_id,
        occurred_at=occurred_at,
        payload=payload,
    )


def observation_created(row: Mapping[str, Any]) -> EventRow:
    """A stored observation (its row's columns): the value, without its note."""
    data = {
        "observation_id": row["id"],
        "patient_id": row["patient_id"],
        "course_id": row["course_id"],
        "session_id": row.get("session_id"),
        "instrument": row["instrument"],
        "value": row["value"],
        "recorded_at": row["recorded_at"],
        "context": row.get("context"),
        "source": row.get("source"),
    }
    return event_row(
        "observation.created", row["received_at"], row["patient_id"], row["course_id"], data
    )


def frequency_changed(
    *,
    patient_id: uuid.UUID,
    course_id: uuid.UUID,
    change_id: uuid.UUID | None,
    previous: float,
    sessions_per_week: float,
    phase: str,
    source: str,
    rule: str | None,
    changed_at: datetime,
) -> EventRow:
    """A course's new frequency (its history row's values, without the reason's text)."""
    data = {
        "course_id": course_id,
        "patient_id": patient_id,
        "change_id": change_id,
        "sessions_per_week": sessions_per_week,
        "previous_sessions_per_week": previous,
        "phase": phase,
        "source": source,
        "rule": rule,
    }
    return event_row("course.frequency_changed", changed_at, patient_id, course_id, data)


def recommendation_changed(
    *,
    patient_id: uuid.UUID,
    course_id: uuid.UUID,
    action: str,
    rule: str | None,
    recommended_sessions_per_week: float,
    current_sessions_per_week: float,
    previous_action: str | None,
    previous_rule: str | None,
    at: datetime,
) -> EventRow:
    data = {
        "course_id": course_id,
        "patient_id": patient_id,
        "action": action,
        "rule": rule,
        "recommended_sessions_per_week": recommended_sessions_per_week,
        "current_sessions_per_week": current_sessions_per_week,
        "previous_action": previous_action,
        "previous_rule": previous_rule,
    }
    return event_row("recommendation.changed", at, patient_id, course_id, data)


def status_changed(
    *, patient_id: uuid.UUID, course_id: uuid.UUID, status: str, previous: str, at: datetime
) -> EventRow:
    data = {
        "course_id": course_id,
        "patient_id": patient_id,
        "status": status,
        "previous_status": previous,
    }
    return event_row("course.status_changed", at, patient_id, course_id, data)
