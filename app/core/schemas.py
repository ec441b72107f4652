"""Schema building blocks shared by every domain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

# A device clock a little ahead of the server's is normal; more than this is a bad timestamp.
FUTURE_TOLERANCE = timedelta(minutes=5)

NUL_CHARACTER = "must not contain a NUL character"
LONE_SURROGATE = "must be valid Unicode text (no unpaired surrogate)"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None. The one rule for every string a
    request brings (body, query, path): PostgreSQL refuses NUL in text (SQLite would keep
    it, so both refuse it here), and a lone surrogate, which JSON's ``\\ud800`` escapes can
    carry, has no UTF-8 form for either database."""
    if "\x00" in value:
        return NUL_CHARACTER
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return LONE_SURROGATE
    return None


def _text_problem_in(value: object) -> str | None:
    """``text_problem`` of a string, or of the first bad string in a list of them."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, list | tuple):
        return next(filter(None, map(_text_problem_in, value)), None)
    return None  # a nested model's fields check themselves


class RequestModel(BaseModel):
    """A request body: unknown fields are a 422, never silently ignored; every string in it is
    text both databases can store (``text_problem``), whatever the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # Before the field's own validation: the reason names the character, not the type.
        if (problem := _text_problem_in(value)) is not None:
            raise ValueError(problem)
        return value


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _iso_text(value: object) -> object:
    """Dates and timestamps come as ISO 8601 text: pydantic would also read a number (or a
    numeric string) as Unix time, which the contract does not allow."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string")
    if value[4:5] == "-":  # YYYY-…: not a number (the usual case, without raising below)
        return value
    try:
        float(value)
    except ValueError:
        return value
    raise ValueError("must be an ISO 8601 string, not a number")


# Times are kept in UTC, whose calendar runs from year 1 to 9999 (Python's): on its first day
# a positive offset can reach back before it (0001-01-01T00:00+01:00 is year 0 in UTC), on its
# last a negative one past it. Those two combinations are refused at any time of day, so that
# the rule is one a pattern can state (an exact "before the calendar in UTC" cannot be, short
# of comparing the time with the offset digit by digit) and the OpenAPI document says it. The
# same moment written in UTC (Z, +00:00 or -00:00) is kept.
OUTSIDE_THE_CALENDAR = (
    "is outside the range of times this service stores (on 0001-01-01 the offset must not be "
    "positive, on 9999-12-31 not negative)"
)
# The rule in the document: an RFC 3339 date-time matches it exactly when `_to_utc` keeps it.
CALENDAR_PATTERN = "^(?!0001-01-01.[^+]*\\+(?!00:00)|9999-12-31.[^-]*-(?!00:00))"


def _to_utc(value: datetime) -> datetime:
    offset = value.utcoffset() or timedelta(0)
    day = value.date()
    if (day == date.min and offset > timedelta(0)) or (day == date.max and offset < timedelta(0)):
        raise ValueError(OUTSIDE_THE_CALENDAR)
    return value.astimezone(UTC)


def _not_in_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError("must not be more than 5 minutes in the future")
    return value


# A calendar date as `YYYY-MM-DD`.
IsoDate = Annotated[date, BeforeValidator(_iso_text)]
# RFC 3339 with an offset (a naive timestamp is rejected), normalised to UTC.
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text),
    AfterValidator(_to_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": CALENDAR_PATTERN}),
]
# A moment something happened: not in the future.
PastTimestamp = Annotated[Timestamp, AfterValidator(_not_in_future)]


def _compact_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# 3 rather than 3.0 for frequencies and similar values that are usually whole.
Number = Annotated[float, PlainSerializer(_compact_number, return_type=float | int)]
