from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from app.core.schemas import Number, PastTimestamp, RequestModel, ResponseModel
from app.observations.catalogue import CATALOGUE, Better, Kind, get_instrument

Context = Literal["rest", "movement", "night", "morning"]
Source = Literal["patient", "clinician", "device"]
Note = Annotated[str, StringConstraints(max_length=2000)]

MAX_BATCH = 500
UNKNOWN_INSTRUMENT = "unknown instrument code: see GET /api/v1/instruments"


def _known_instrument(code: str) -> str:
    if get_instrument(code) is None:
        raise ValueError(UNKNOWN_INSTRUMENT)
    return code


InstrumentCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40),
    AfterValidator(_known_instrument),
    # The schema names the codes the validator accepts.
    WithJsonSchema({"type": "string", "enum": [instrument.code for instrument in CATALOGUE]}),
]


def _value_fits_its_instrument(schema: dict[str, Any]) -> None:
    """The value's range (and whole numbers) depend on the instrument: one branch each."""
    schema["oneOf"] = [
        {
            "properties": {
                "instrument": {"const": instrument.code},
                "value": {
                    "type": "integer" if instrument.integer else "number",
                    "minimum": instrument.min,
                    "maximum": instrument.max,
                },
            }
        }
        for instrument in CATALOGUE
    ]


class InstrumentRead(ResponseModel):
    code: str
    name: str
    kind: Kind
    unit: str = Field(description="UCUM unit.")
    min: Number
    max: Number
    integer: bool = Field(description="Only whole numbers are accepted.")
    better: Better = Field(description="The direction of improvement.")
    best: Number = Field(description="The healthy end improvement_pct is measured against.")
    mcid_abs: Number = Field(description="Minimal clinically important difference, in `unit`.")
    mcid_pct: Number = Field(description="Minimal clinically important difference, in %.")
    remission: Number = Field(
        description="Remission threshold (≤ where lower is better, ≥ where higher is better)."
    )
    loinc: str | None
    mcid_source: str = Field(
        description="Where `mcid_abs` comes from: a short citation, or "
        '"product default: no published value found".'
    )


class ObservationCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=_value_fits_its_instrument)

    id: uuid.UUID | None = Field(
        None,
        description="A client-chosen id (offline apps): re-posting it with the same content "
        "returns the stored observation with 200; with different content it is a 409.",
    )
    # `instrument` precedes `value`: the value's validator reads the instrument's range.
    instrument: InstrumentCode = Field(description="A `code` from `GET /api/v1/instruments`.")
    value: float = Field(
        strict=True,  # a number, not a string or a boolean
        allow_inf_nan=False,
        description="Within the instrument's `min`–`max`; a whole number where `integer`.",
    )
    recorded_at: PastTimestamp = Field(
        description="When the measure was taken (RFC 3339 with an offset; "
        "at most 5 minutes in the future)."
    )
    course_id: uuid.UUID | None = Field(None, description="A course of this patient.")
    session_id: uuid.UUID | None = Field(
        None, description="A session of this patient (of `course_id` when both are given)."
    )
    context: Context | None = None
    source: Source | None = None
    note: Note | None = None

    @field_validator("value")
    @classmethod
    def _value_fits_instrument(cls, value: float, info: ValidationInfo) -> float:
        # Absent when the instrument itself failed validation: that error is already reported.
        instrument = get_instrument(info.data.get("instrument", ""))
        if instrument is not None and (reason := instrument.accepts(value)) is not None:
            raise ValueError(reason)
        return value


def _raw(item: Any) -> Any:
    return item


# Batch items are kept as raw JSON and validated one by one by the service, so that one bad
# item is reported in its result instead of rejecting the whole batch; the schema still
# documents them as ObservationCreate.
RawObservationCreate = Annotated[
    Any, PlainValidator(_raw, json_schema_input_type=ObservationCreate)
]


class ObservationBatchCreate(RequestModel):
    observations: list[RawObservationCreate] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1–{MAX_BATCH} observations; each is validated and stored on its own "
        "merits, in one transaction.",
    )


class ObservationRead(ResponseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    instrument: str
    value: Number
    recorded_at: datetime
    received_at: datetime = Field(description="When the service first stored it.")
    course_id: uuid.UUID | None
    session_id: uuid.UUID | None
    context: Context | None
    source: Source | None
    note: str | None


class BatchItemError(ResponseModel):
    loc: list[str | int]
    msg: str


BatchStatus = Literal["created", "duplicate", "rejected"]


class BatchItemResult(ResponseModel):
    index: int = Field(description="Position of the item in the request.")
    id: uuid.UUID | None = Field(
        description="The stored (or client-supplied) id; null for a rejected item without one."
    )
    status: BatchStatus = Field(
        description="`created`; `duplicate` (this id is already stored with the same content); "
        "`rejected` (nothing stored; see `errors`)."
    )
    errors: list[BatchItemError] | None = Field(
        None, description="Why a rejected item was rejected (loc is relative to the item)."
    )


class BatchResult(ResponseModel):
    results: list[BatchItemResult] = Field(description="One per item, in input order.")
