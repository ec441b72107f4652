from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from app.core.schemas import PastTimestamp, RequestModel, ResponseModel

Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SessionCreate(RequestModel):
    performed_at: PastTimestamp = Field(
        description="RFC 3339 with an offset; at most 5 minutes in the future, and not before "
        "the course's `start_date`."
    )
    technique: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = Field(
        None, description="Defaults to the course's technique."
    )
    sites: Annotated[list[Label], Field(max_length=50)] = Field(
        default_factory=list, description="Injection sites, e.g. `L4-L5 paravertebral left`."
    )
    ozone_concentration_ug_ml: Annotated[float, Field(ge=1, le=80, allow_inf_nan=False)] | None = (
        None
    )
    volume_ml: Annotated[float, Field(ge=0, le=50, allow_inf_nan=False)] | None = None
    injection_points: Annotated[int, Field(ge=1, le=50)] | None = None
    pain_before: Annotated[int, Field(ge=0, le=10)] | None = None
    pain_after: Annotated[int, Field(ge=0, le=10)] | None = None
    adverse_events: Annotated[list[Label], Field(max_length=50)] = Field(default_factory=list)
    notes: Annotated[str, StringConstraints(max_length=5000)] | None = None


class SessionRead(ResponseModel):
    id: uuid.UUID
    course_id: uuid.UUID
    patient_id: uuid.UUID
    number: int = Field(description="1, 2, … within the course, in the order sessions were logged.")
    performed_at: datetime
    technique: str | None
    sites: list[str]
    ozone_concentration_ug_ml: float | None
    volume_ml: float | None
    injection_points: int | None
    pain_before: int | None
    pain_after: int | None
    adverse_events: list[str]
    notes: str | None
    created_at: datetime
