from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from app.core.schemas import IsoDate, RequestModel, ResponseModel

Sex = Literal["female", "male", "other", "unknown"]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Condition = Annotated[str, StringConstraints(min_length=1, max_length=500)]


def _plausible_birth_date(value: date) -> date:
    if value > date.today():
        raise ValueError("must not be in the future")
    if value.year < 1900:
        raise ValueError("must be in 1900 or later")
    return value


BirthDate = Annotated[
    IsoDate,
    AfterValidator(_plausible_birth_date),
    # The bounds the validator keeps: from 1900 (the pattern), to today (no schema can say).
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": "^(?:19|[2-9][0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}$",
            "description": "YYYY-MM-DD, from 1900-01-01 to today.",
        }
    ),
]


class PatientCreate(RequestModel):
    external_id: ExternalId | None = Field(None, description="The clinic's identifier (unique).")
    name: Name | None = None
    birth_date: BirthDate | None = None
    sex: Sex | None = None
    condition: Condition | None = None


class PatientUpdate(RequestModel):
    """Fields to change; a field sent as null is cleared."""

    external_id: ExternalId | None = None
    name: Name | None = None
    birth_date: BirthDate | None = None
    sex: Sex | None = None
    condition: Condition | None = None


class PatientRead(ResponseModel):
    id: uuid.UUID
    external_id: str | None
    name: str | None
    birth_date: date | None
    sex: Sex | None
    condition: str | None
    created_at: datetime
    updated_at: datetime
