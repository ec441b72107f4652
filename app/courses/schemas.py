from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.config import JsonDict

from app.analytics.registry import DEFAULT_POLICY, policies
from app.core.schemas import IsoDate, RequestModel, ResponseModel
from app.courses.frequency import SessionsPerWeek

Technique = Literal["intramuscular", "paravertebral", "subcutaneous", "intra-articular"]
CourseStatus = Literal["active", "paused", "completed", "discontinued"]
Phase = Literal["induction", "consolidation", "maintenance"]
Adjustment = Literal["auto", "confirm"]
FrequencySource = Literal["initial", "policy", "clinician"]

Notes = Annotated[str, StringConstraints(max_length=5000)]


def _plausible_start(value: date) -> date:
    if value < date(2000, 1, 1):
        raise ValueError("must be in 2000 or later")
    if value > date.today() + timedelta(days=365):
        raise ValueError("must be within a year from today")
    return value


def _known_policies(schema: JsonDict) -> None:
    schema["enum"] = list[JsonValue](sorted(policies()))


class CourseCreate(RequestModel):
    indication: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    region: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    technique: Technique
    start_date: Annotated[
        IsoDate,
        AfterValidator(_plausible_start),
        # The bounds the validator keeps: from 2000 (the pattern), to a year from today.
        WithJsonSchema(
            {
                "type": "string",
                "format": "date",
                "pattern": "^[2-9][0-9]{3}-[0-9]{2}-[0-9]{2}$",
                "description": "YYYY-MM-DD, from 2000-01-01 to a year from today.",
            }
        ),
    ]
    sessions_per_week: SessionsPerWeek = 3
    adjustment: Adjustment = Field(
        "auto",
        description="`auto`: the policy applies frequency changes; `confirm`: a clinician does.",
    )
    max_sessions: Annotated[int, Field(ge=1, le=500)] | None = None
    notes: Notes | None = None
    policy: str = Field(
        DEFAULT_POLICY,
        description="The frequency policy that steers the course (a registry id).",
        # The ids the validator accepts: those of this deployment (read when the schema is).
        json_schema_extra=_known_policies,
    )

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in policies():
            raise ValueError(f"unknown policy; available: {', '.join(sorted(policies()))}")
        return value


class CourseUpdate(RequestModel):
    # Left out to keep the status; never null (so the schema has no null for it).
    status: Annotated[
        CourseStatus | None,
        WithJsonSchema({"type": "string", "enum": list(get_args(CourseStatus))}),
    ] = Field(None, description="`completed` and `discontinued` are final.")
    notes: Notes | None = Field(None, description="Null clears the notes.")

    @field_validator("status")
    @classmethod
    def _status_not_null(cls, value: CourseStatus | None) -> CourseStatus:
        if value is None:
            raise ValueError("a course always has a status; omit the field to keep it")
        return value


class FrequencyChangeCreate(RequestModel):
    sessions_per_week: SessionsPerWeek
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class CourseRead(ResponseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    indication: str
    region: str
    technique: Technique
    start_date: date
    sessions_per_week: int
    adjustment: Adjustment
    max_sessions: int | None
    status: CourseStatus
    phase: Phase
    sessions_done: int
    next_session_due: date | None
    notes: str | None
    policy: str
    created_at: datetime
    updated_at: datetime


class FrequencyChangeRead(ResponseModel):
    sessions_per_week: int
    phase: Phase
    changed_at: datetime
    source: FrequencySource
    rule: str | None
    reason: str


class FrequencyHistory(ResponseModel):
    items: list[FrequencyChangeRead]
