"""FHIR search parameters: parsing and validation (pure; no database, no HTTP framework).

Supported: `patient` (reference), `code` (token), `_lastUpdated` (date, prefixes gt ge lt le
eq), `_count`, `_cursor` (this server's paging), `_since` (`$everything`), `_format` (JSON only).
Unknown parameters and modifiers are a 400 by default: a filter silently ignored would return
more clinical data than asked for. A client that prefers FHIR's lenient behaviour sends
`Prefer: handling=lenient`; ignored parameters are then left out of the `self` link, as the
specification asks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from app.core.errors import AppError, field_error
from app.fhir import terminology as t
from app.observations.catalogue import CATALOGUE

DEFAULT_COUNT = 50
MAX_COUNT = 500
MAX_CURSOR_LENGTH = 512

JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})


class InvalidSearch(AppError):
    """A search or operation parameter the server cannot honour (400 OperationOutcome)."""

    status = 400
    slug = "invalid-search"
    title = "Invalid search parameter"

    @classmethod
    def at_param(cls, name: str, msg: str) -> InvalidSearch:
        return cls(f"{name}: {msg}", [field_error(["query", name], msg)])


class NotAcceptable(AppError):
    status = 406
    slug = "not-acceptable"
    title = "Not acceptable"


@dataclass(frozen=True, slots=True)
class TimeBound:
    """`column <op> at`: every date prefix reduces to inclusive-lower / exclusive-upper bounds."""

    op: Literal[">=", "<"]
    at: datetime


@dataclass(frozen=True, slots=True)
class SearchQuery:
    patient_id: uuid.UUID | None = None
    # A search that can match nothing (an unknown patient id, a code no instrument has).
    matches_nothing: bool = False
    instruments: frozenset[str] | None = None  # None: no `code` filter
    last_updated: tuple[TimeBound, ...] = ()
    count: int = DEFAULT_COUNT
    cursor: str | None = None
    # The parameters honoured, as given (for the `self` and `next` links).
    echo: tuple[tuple[str, str], ...] = field(default=())


# --- dates ----------------------------------------------------------------------------------

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?$"
)
_PREFIXES = ("eq", "gt", "ge", "lt", "le")


def parse_date_range(raw: str) -> tuple[datetime, datetime]:
    """The interval ``[start, end)`` that a FHIR date or dateTime value stands for: its
    precision decides the width (`2026` is the whole year, `…T10:00:00Z` one second,
    `…T10:00:00.123456Z` one microsecond). A time needs a zone; a date alone is in UTC."""
    # An unencoded "+" in a query string arrives as a space.
    match = _DATE.match(raw.replace(" ", "+"))
    if match is None:
        raise ValueError(
            "not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime with a zone)"
        )
    parts = match.groupdict()
    year = int(parts["year"])
    if parts["month"] is None:
        start = datetime(year, 1, 1, tzinfo=UTC)
        return start, start.replace(year=year + 1)
    month = int(parts["month"])
    if parts["day"] is None:
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return start, end
    day = int(parts["day"])
    if parts["hour"] is None:
        start = datetime(year, month, day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    tz = _zone(parts["tz"])
    hour, minute = int(parts["hour"]), int(parts["minute"])
    if parts["second"] is None:
        start = datetime(year, month, day, hour, minute, tzinfo=tz)
        return start.astimezone(UTC), (start + timedelta(minutes=1)).astimezone(UTC)
    second = int(parts["second"])
    fraction = (parts["fraction"] or "")[:6]  # the database keeps microseconds
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    width = timedelta(microseconds=10 ** (6 - len(fraction))) if fraction else timedelta(seconds=1)
    return start.astimezone(UTC), (start + width).astimezone(UTC)


def _zone(raw: str) -> timezone:
    if raw == "Z":
        return UTC
    sign = 1 if raw[0] == "+" else -1
    hours, minutes = int(raw[1:3]), int(raw[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError("time zone offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_date_param(raw: str) -> tuple[TimeBound, ...]:
    """One `_lastUpdated` value (with an optional prefix) as bounds on the column."""
    if raw[:2].isalpha() and raw[:2] not in _PREFIXES:
        raise ValueError(f"prefix {raw[:2]!r} is not supported (use gt, ge, lt, le or eq)")
    prefix, value = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
    start, end = parse_date_range(value)
    if prefix == "ge":
        return (TimeBound(">=", start),)
    if prefix == "gt":
        return (TimeBound(">=", end),)
    if prefix == "lt":
        return (TimeBound("<", start),)
    if prefix == "le":
        return (TimeBound("<", end),)
    return (TimeBound(">=", start), TimeBound("<", end))


def parse_instant(raw: str) -> datetime:
    """An instant (`_since`): a dateTime to the second at least, with a zone."""
    match = _DATE.match(raw.replace(" ", "+"))
    if match is None or match.group("second") is None:
        raise ValueError("must be an instant, e.g. 2026-01-31T08:00:00Z")
    return parse_date_range(raw)[0]


# --- tokens and references ------------------------------------------------------------------


def instruments_for_token(raw: str) -> frozenset[str]:
    """The instrument codes a `code` token (`system|code`, `|code`, `system|` or `code`; a
    comma separates alternatives) matches. An unknown system or code matches none."""
    matched: set[str] = set()
    for value in raw.split(","):
        system, bar, code = value.rpartition("|") if "|" in value else ("", "", value)
        for ins in CATALOGUE:
            codings = [(t.INSTRUMENT_SYSTEM, ins.code)]
            if ins.loinc:
                codings.append((t.LOINC, ins.loinc))
            for coding_system, coding_code in codings:
                if not bar:
                    hit = code == coding_code
                elif system == "":
                    hit = False  # `|code`: a coding without a system; all of ours have one
                else:
                    hit = system == coding_system and code in ("", coding_code)
                if hit:
                    matched.add(ins.code)
    return frozenset(matched)


def patient_reference(raw: str) -> uuid.UUID | None:
    """The id of `Patient/<id>` or a bare `<id>`; None for an id that cannot exist here.

    Raises ValueError for a reference to another resource type."""
    if "/" in raw:
        resource_type, _, raw = raw.partition("/")
        if resource_type != "Patient" or "/" in raw:
            raise ValueError("must be `Patient/<id>` or `<id>`")
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None  # a well-formed FHIR id that is not one of ours: matches nothing


# --- the whole query ------------------------------------------------------------------------


def _single(name: str, values: list[str]) -> str:
    if len(values) > 1:
        raise InvalidSearch.at_param(name, "may be given once")
    return values[0]


def parse_search(
    items: Iterable[tuple[str, str]], *, supported: Sequence[str], strict: bool = True
) -> SearchQuery:
    """Validate a query string against the parameters a resource supports."""
    by_name: dict[str, list[str]] = {}
    ignored: list[str] = []
    for name, value in items:
        base = name.partition(":")[0]
        if base not in supported:
            if strict:
                ignored.append(name)
            continue
        if ":" in name:
            raise InvalidSearch.at_param(name, "modifiers are not supported")
        if value == "":
            raise InvalidSearch.at_param(name, "must have a value")
        by_name.setdefault(name, []).append(value)
    if ignored:
        names = ", ".join(sorted(set(ignored)))
        raise InvalidSearch(
            f"Unknown or unsupported parameter(s): {names}. Supported: "
            f"{', '.join(supported)} (or send `Prefer: handling=lenient` to ignore them)."
        )

    query: dict[str, Any] = {}
    echo: list[tuple[str, str]] = []
    if "_format" in by_name:
        fmt = _single("_format", by_name["_format"])
        if fmt not in JSON_FORMATS:
            raise NotAcceptable("This server speaks JSON only (`_format=json`).")
    if "patient" in by_name:
        raw = _single("patient", by_name["patient"])
        if "," in raw:
            raise InvalidSearch.at_param("patient", "one patient per search")
        try:
            patient_id = patient_reference(raw)
        except ValueError as exc:
            raise InvalidSearch.at_param("patient", str(exc)) from exc
        query["patient_id"] = patient_id
        if patient_id is None:
            query["matches_nothing"] = True
        echo.append(("patient", raw))
    if "code" in by_name:
        instruments: frozenset[str] | None = None
        for raw in by_name["code"]:  # repeated: all must hold
            matched = instruments_for_token(raw)
            instruments = matched if instruments is None else instruments & matched
            echo.append(("code", raw))
        query["instruments"] = instruments
        if not instruments:
            query["matches_nothing"] = True
    bounds: list[TimeBound] = []
    for raw in by_name.get("_lastUpdated", []):
        try:
            bounds += parse_date_param(raw)
        except ValueError as exc:
            raise InvalidSearch.at_param("_lastUpdated", str(exc)) from exc
        echo.append(("_lastUpdated", raw.replace(" ", "+")))
    if "_since" in by_name:
        raw = _single("_since", by_name["_since"])
        try:
            bounds.append(TimeBound(">=", parse_instant(raw)))
        except ValueError as exc:
            raise InvalidSearch.at_param("_since", str(exc)) from exc
        echo.append(("_since", raw.replace(" ", "+")))
    query["last_updated"] = tuple(bounds)
    if "_count" in by_name:
        raw = _single("_count", by_name["_count"])
        if not raw.isdigit():
            raise InvalidSearch.at_param("_count", "must be a whole number, 0 or more")
        # FHIR lets a server return fewer than asked: above the maximum is the maximum.
        query["count"] = min(int(raw), MAX_COUNT)
    if "_cursor" in by_name:
        raw = _single("_cursor", by_name["_cursor"])
        if len(raw) > MAX_CURSOR_LENGTH:
            raise InvalidSearch.at_param("_cursor", "is not a cursor of this server")
        query["cursor"] = raw
    return SearchQuery(echo=tuple(echo), **query)


# --- paging cursors -------------------------------------------------------------------------


def encode_cursor(section: str, moment: datetime | None, row_id: uuid.UUID | None) -> str:
    """Where the next page starts: after ``(moment, row_id)`` in ``section``, or at the
    start of ``section`` when they are None."""
    values = [section, moment.isoformat() if moment else None, str(row_id) if row_id else None]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, sections: Sequence[str]
) -> tuple[str, datetime | None, uuid.UUID | None]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        section, moment, row_id = raw
        if section not in sections:
            raise ValueError("another search's cursor")
        if (moment is None) != (row_id is None):
            raise ValueError("half a key")
        if moment is None:
            return section, None, None
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return section, at, uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidSearch.at_param(
            "_cursor", "is not a cursor of this search: follow the bundle's `next` link"
        ) from exc
