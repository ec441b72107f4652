"""Schema building blocks shared by every domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, PlainSerializer

# A device clock a little ahead of the server's is normal; more than this is a bad timestamp.
FUTURE_TOLERANCE = timedelta(minutes=5)


class RequestModel(BaseModel):
    """A request body: unknown fields are a 422, never silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _not_in_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError("must not be more than 5 minutes in the future")
    return value


# RFC 3339 with an offset (a naive timestamp is rejected), normalised to UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(_to_utc)]
# A moment something happened: not in the future.
PastTimestamp = Annotated[AwareDatetime, AfterValidator(_to_utc), AfterValidator(_not_in_future)]


def _compact_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# 3 rather than 3.0 for frequencies and similar values that are usually whole.
Number = Annotated[float, PlainSerializer(_compact_number, return_type=float | int)]
