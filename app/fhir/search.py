"""FHIR search parameters: parsing and validation (pure; no database, no HTTP framework).

Supported: `patient` (reference), `code` (token), `identifier` (token, Patient), `date` and
`_lastUpdated` (dates, prefixes gt ge lt le eq), `_sort`, `_summary=count`, `_total`,
`_include=<type>:patient`, `_count`, `_cursor` (this server's paging), `_since`
(`$everything`), `_format` (JSON only).
Unknown parameters and modifiers are a 400 by default: a filter silently ignored would return
more clinical data than asked for. A client that prefers FHIR's lenient behaviour sends
`Prefer: handling=lenient`; ignored parameters are then left out of the `self` link, as the
specification asks.

What each parameter accepts is written once, in PARAMS: the routes declare it in the OpenAPI
schema and ``parse_search`` checks every value against it before reading it, so the schema
and the server agree on every value (a value the declaration admits is read, one it does not
is a 400, or a 406 for `_format`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, cast, get_args

from app.core.errors import AppError, field_error
from app.core.pagination import KEY_PATTERN, decode_key, encode_key
from app.fhir import terminology as t
from app.observations.catalogue import CATALOGUE

DEFAULT_COUNT = 50
MAX_COUNT = 500
# Larger page sizes are read as MAX_COUNT; this many digits at most (the declared maximum).
MAX_COUNT_DIGITS = 9

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


# The orders a search can be sorted in (`_sort`): by meta.lastUpdated (the default) or, for
# Observations, by the effective time (`date`); `-` for newest first. Ties go by id.
SortName = Literal["_lastUpdated", "-_lastUpdated", "date", "-date"]
DEFAULT_SORT: SortName = "_lastUpdated"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    patient_id: uuid.UUID | None = None
    # A search that can match nothing (an unknown patient id, a code no instrument has).
    matches_nothing: bool = False
    instruments: frozenset[str] | None = None  # None: no `code` filter
    last_updated: tuple[TimeBound, ...] = ()
    recorded: tuple[TimeBound, ...] = ()  # `date`: an Observation's effective time
    # `identifier`: a Patient whose external_id is one of these (None: no such filter) ...
    external_ids: frozenset[str] | None = None
    # ... and who has one at all (`identifier=<system>|`).
    with_external_id: bool = False
    sort: SortName = DEFAULT_SORT
    total: bool = True  # whether the Bundle's `total` is counted (`_total=none`: not)
    summary_count: bool = False  # `_summary=count`: the total alone
    include_patients: bool = False  # `_include=<type>:patient`
    count: int = DEFAULT_COUNT
    cursor: str | None = None
    # The parameters honoured, as given (for the `self` and `next` links).
    echo: tuple[tuple[str, str], ...] = field(default=())


# --- what each parameter accepts ------------------------------------------------------------

# The resource types a search or `$everything` pages through, as its cursor names them.
SECTION_NAMES = ("Patient", "CarePlan", "Procedure", "Observation")
# What each type search offers beyond its filters: its orders (`_sort`) and the resources it
# can include (`_include`). `$everything` pages through its types in a fixed order, and has none.
SORTS: dict[str, tuple[SortName, ...]] = {
    "Patient": ("_lastUpdated", "-_lastUpdated"),
    "CarePlan": ("_lastUpdated", "-_lastUpdated"),
    "Procedure": ("_lastUpdated", "-_lastUpdated"),
    "Observation": ("_lastUpdated", "-_lastUpdated", "date", "-date"),
}
INCLUDES: dict[str, tuple[str, ...]] = {
    resource_type: (f"{resource_type}:patient", f"{resource_type}:patient:Patient")
    for resource_type in ("CarePlan", "Procedure", "Observation")
}

# FHIR dates and dateTimes in the years 1900–2999, every calendar date and no other: a
# regular expression can say which days a month has, and which years are leap years.
_YEAR = "(?:19|2[0-9])[0-9]{2}"
_LEAP_YEAR = "(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|(?:20|24|28)00)"
_MONTH_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"  # the 1st to the 28th of any month
    "|(?:0[13-9]|1[0-2])-(?:29|30)"  # the 29th and 30th of all but February
    "|(?:0[13578]|1[02])-31)"  # the 31st of the long months
)
_DAY = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_ZONE = "(?:Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_SECONDS = ":[0-5][0-9](?:\\.[0-9]{1,9})?"
FHIR_DATE = f"(?:{_YEAR}(?:-(?:0[1-9]|1[0-2]))?|{_DAY}(?:T{_TIME}(?:{_SECONDS})?{_ZONE})?)"
FHIR_INSTANT = f"{_DAY}T{_TIME}{_SECONDS}{_ZONE}"
# A FHIR resource id (R4 `id`: letters, digits, `-` and `.`; at most 64).
FHIR_ID = "[A-Za-z0-9.-]{1,64}"


def searched_type(sections: Sequence[str]) -> str | None:
    """The resource type of a type search (which pages through that one type), or None for
    `$everything` (several types)."""
    return sections[0] if len(sections) == 1 else None


def sorts_of(sections: Sequence[str]) -> tuple[SortName, ...]:
    resource_type = searched_type(sections)
    return SORTS.get(resource_type, ()) if resource_type else ()


def cursor_pattern(sections: Sequence[str] = SECTION_NAMES) -> str:
    """A page cursor of a search through ``sections``: where the next page starts (a section,
    in which order unless the default one, and after which row of it). Every string of this
    shape is one."""
    orders = [name for name in sorts_of(sections) if name != DEFAULT_SORT]
    order = f"(?::(?:{'|'.join(orders)}))?" if orders else ""
    return f"^(?:{'|'.join(sections)}){order}(?:\\.{KEY_PATTERN})?$"


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter as the OpenAPI schema declares it and as the server checks it."""

    description: str
    schema: dict[str, Any]  # of one value
    message: str  # why a value the schema does not admit is refused
    repeatable: bool = False


PARAMS: dict[str, Param] = {
    "patient": Param(
        "`Patient/<id>` or `<id>`; required for patient tokens (their own id).",
        {"type": "string", "pattern": f"^(?:Patient/)?{FHIR_ID}$"},
        "must be `Patient/<id>` or `<id>`, one FHIR id (letters, digits, - and ., at most 64)",
    ),
    "code": Param(
        "Instrument: `http://loinc.org|72514-3`, this service's code, or a bare code; "
        "a comma separates alternatives.",
        {"type": "string", "pattern": "^[^\\x00]+$"},
        "must have a value, without NUL characters",
        repeatable=True,
    ),
    "identifier": Param(
        "The patient's MRN (`external_id`): `<system>|<value>` in the system Patient.identifier "
        "carries, `<value>` in any system, `|<value>` without a system (none here), or "
        "`<system>|` (every patient with one); a comma separates alternatives, and `\\,` `\\|` "
        "`\\$` `\\\\` stand for those characters in a value; repeatable (all must hold).",
        {"type": "string", "pattern": "^[^\\x00]{1,1024}$"},
        "must have a value of at most 1024 characters, without NUL characters",
        repeatable=True,
    ),
    "date": Param(
        "The Observation's effective time: `gt`, `ge`, `lt`, `le` or `eq` (the default) + a "
        "FHIR date or dateTime (with a zone) in the years 1900–2999, standing for the whole "
        "interval it names (`eq2026-05-01` is that day, UTC); repeatable (all must hold).",
        {"type": "string", "pattern": f"^(?:eq|gt|ge|lt|le)?{FHIR_DATE}$"},
        "must be a prefix (eq, gt, ge, lt, le) and a FHIR date or dateTime with a zone, in "
        "the years 1900–2999",
        repeatable=True,
    ),
    "_lastUpdated": Param(
        "`gt`, `ge`, `lt`, `le` or `eq` (the default) + a FHIR date or dateTime (with a zone) "
        "in the years 1900–2999; repeatable (all must hold).",
        {"type": "string", "pattern": f"^(?:eq|gt|ge|lt|le)?{FHIR_DATE}$"},
        "must be a prefix (eq, gt, ge, lt, le) and a FHIR date or dateTime with a zone, in "
        "the years 1900–2999",
        repeatable=True,
    ),
    "_sort": Param(
        "One order: `_lastUpdated` (the default) or `-_lastUpdated` (newest first), and on "
        "Observation `date` or `-date` (by effective time); ties by id. A `_cursor` carries its "
        "search's order, which it keeps.",
        {"type": "string", "enum": list(get_args(SortName))},
        "must be one order this search offers: _lastUpdated or -_lastUpdated (and date or "
        "-date on Observation)",
    ),
    "_summary": Param(
        "`count`: the total alone, no entries.",
        {"type": "string", "enum": ["count"]},
        "must be `count` (the only summary offered)",
    ),
    "_total": Param(
        "`accurate` (the default: the Bundle's `total` is counted) or `none` (no `total`, one "
        "query less); `_summary=count` counts whatever this says.",
        {"type": "string", "enum": ["accurate", "none"]},
        "must be `accurate` or `none`",
    ),
    "_totalMethod": Param(
        "`count`: as `_total=accurate` (what fhirpy's `count()` sends).",
        {"type": "string", "enum": ["count"]},
        "must be `count`",
    ),
    "_include": Param(
        "`<type>:patient` (or `<type>:patient:Patient`): the Patient of each resource on the "
        "page, once each, as an `include` entry; repeatable.",
        {"type": "string", "enum": [name for names in INCLUDES.values() for name in names]},
        "must be `<the searched type>:patient` (or `<the searched type>:patient:Patient`)",
        repeatable=True,
    ),
    "_since": Param(
        "Only resources changed at or after this instant (to the second at least, with a zone).",
        {"type": "string", "pattern": f"^{FHIR_INSTANT}$"},
        "must be an instant in the years 1900–2999, e.g. 2026-01-31T08:00:00Z",
    ),
    "_count": Param(
        f"Page size: default {DEFAULT_COUNT}; more than {MAX_COUNT} gives {MAX_COUNT}; "
        "0 gives the total alone.",
        {"type": "integer", "minimum": 0, "maximum": 10**MAX_COUNT_DIGITS - 1},
        f"must be a whole number from 0 to {10**MAX_COUNT_DIGITS - 1}",
    ),
    "_cursor": Param(
        "Set by the server in the `next` link.",
        {"type": "string", "pattern": cursor_pattern()},
        "is not a cursor of this search: follow the bundle's `next` link",
    ),
    "_format": Param(
        "`json` (the only format).",
        {"type": "string", "enum": sorted(JSON_FORMATS)},
        "This server speaks JSON only (`_format=json`).",
    ),
}
_COUNT = re.compile(f"[0-9]{{1,{MAX_COUNT_DIGITS}}}")


def declared(name: str, sections: Sequence[str] = SECTION_NAMES) -> dict[str, Any]:
    """The OpenAPI schema of parameter ``name`` on a route searching ``sections``."""
    param = PARAMS[name]
    schema = dict(param.schema)
    if name == "_cursor":
        schema["pattern"] = cursor_pattern(sections)
    elif name == "_sort":
        schema["enum"] = list(sorts_of(sections))
    elif name == "_include":
        schema["enum"] = list(INCLUDES.get(searched_type(sections) or "", ()))
    return {"type": "array", "items": schema} if param.repeatable else schema


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
    """One `_lastUpdated` or `date` value (with an optional prefix) as bounds on the column.

    The column holds instants, and the value stands for an interval [start, end): `eq` is an
    instant inside it, `ge` one at or after its start (the range above the value overlaps
    the instant), `gt` one at or after its end, `lt` one before its start, `le` one before
    its end, as FHIR's search page defines the prefixes for a value's implicit range."""
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


_ESCAPE = re.compile(r"\\([,|$\\])")


def _split_unescaped(raw: str, separator: str, *, most: int | None = None) -> list[str]:
    """``raw`` split at each ``separator`` that no backslash escapes (at most ``most`` times);
    the escapes are kept, for ``_unescape``."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "\\" and index + 1 < len(raw):
            current.append(raw[index : index + 2])
            index += 2
            continue
        if char == separator and (most is None or len(parts) < most):
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _unescape(raw: str) -> str:
    """FHIR's search escapes (`\\,` `\\|` `\\$` `\\\\`) as the characters they stand for; a
    backslash before anything else is itself."""
    return _ESCAPE.sub(r"\1", raw)


def external_ids_for_token(raw: str, system: str) -> frozenset[str] | None:
    """The external ids (MRNs) an `identifier` token matches, given the ``system`` this server
    writes them in: `system|value`, `value` (any system: ours), `|value` (no system: ours
    always has one, so none) or `system|` (None: every patient who has one); a comma
    separates alternatives. Exact matches: an MRN is a code, not text."""
    matched: set[str] = set()
    for alternative in _split_unescaped(raw, ","):
        parts = [_unescape(part) for part in _split_unescaped(alternative, "|", most=1)]
        if len(parts) == 1:
            matched.add(parts[0])
            continue
        given_system, value = parts
        if given_system != system:
            continue  # another system, or none (`|value`)
        if not value:
            return None  # `system|`: every MRN, these alternatives included
        matched.add(value)
    return frozenset(value for value in matched if value)


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


_DATES = frozenset({"_lastUpdated", "_since", "date"})


def _python_pattern(pattern: str) -> str:
    # JSON Schema patterns are ECMA-262: `$` is the end of the text. In Python's `re` it also
    # matches before a final newline, which `\Z` does not.
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def admits(name: str, value: str, sections: Sequence[str] = SECTION_NAMES) -> bool:
    """Whether ``value`` is one that parameter ``name``'s declaration (on a route searching
    ``sections``) admits."""
    schema = declared(name, sections)
    schema = schema.get("items", schema)
    if schema["type"] == "integer":
        return _COUNT.fullmatch(value) is not None
    if "enum" in schema:
        choices: list[str] = schema["enum"]
        return value in choices
    if "pattern" in schema:
        return re.search(_python_pattern(schema["pattern"]), value) is not None
    min_length: int = schema.get("minLength", 0)
    return len(value) >= min_length


def parse_search(
    items: Iterable[tuple[str, str]],
    *,
    supported: Sequence[str],
    strict: bool = True,
    sections: Sequence[str] = SECTION_NAMES,
    identifier_system: str | None = None,
) -> SearchQuery:
    """Validate a query string against the parameters a resource supports (``sections``: the
    resource types its pages go through, which its cursors name; ``identifier_system``: the
    system of Patient.identifier, which `identifier` needs)."""
    by_name: dict[str, list[str]] = {}
    ignored: list[str] = []
    for name, given in items:
        base = name.partition(":")[0]
        if base not in supported:
            if strict:
                ignored.append(name)
            continue
        if ":" in name:
            raise InvalidSearch.at_param(name, "modifiers are not supported")
        # An unencoded "+" in a query string arrives as a space.
        value = given.replace(" ", "+") if name in _DATES else given
        if not admits(name, value, sections):
            if name == "_format":
                raise NotAcceptable(PARAMS[name].message)
            raise InvalidSearch.at_param(name, PARAMS[name].message)
        by_name.setdefault(name, []).append(value)
    if ignored:
        names = ", ".join(sorted(set(ignored)))
        raise InvalidSearch(
            f"Unknown or unsupported parameter(s): {names}. Supported: "
            f"{', '.join(supported)} (or send `Prefer: handling=lenient` to ignore them)."
        )
    for name, values in by_name.items():
        if len(values) > 1 and not PARAMS[name].repeatable:
            raise InvalidSearch.at_param(name, "may be given once")

    # Every value is one its declaration admits: reading it cannot fail.
    query: dict[str, Any] = {}
    echo: list[tuple[str, str]] = []
    if "patient" in by_name:
        raw = by_name["patient"][0]
        patient_id = patient_reference(raw)
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
    if "identifier" in by_name:
        if identifier_system is None:
            raise ValueError("reading `identifier` needs the identifier system")
        external_ids: frozenset[str] | None = None
        for raw in by_name["identifier"]:  # repeated: all must hold
            matched_ids = external_ids_for_token(raw, identifier_system)
            if matched_ids is None:
                query["with_external_id"] = True
            else:
                external_ids = matched_ids if external_ids is None else external_ids & matched_ids
            echo.append(("identifier", raw))
        query["external_ids"] = external_ids
        if external_ids is not None and not external_ids:
            query["matches_nothing"] = True
    recorded: list[TimeBound] = []
    for raw in by_name.get("date", []):
        recorded += parse_date_param(raw)
        echo.append(("date", raw))
    query["recorded"] = tuple(recorded)
    bounds: list[TimeBound] = []
    for raw in by_name.get("_lastUpdated", []):
        bounds += parse_date_param(raw)
        echo.append(("_lastUpdated", raw))
    if "_since" in by_name:
        raw = by_name["_since"][0]
        bounds.append(TimeBound(">=", parse_instant(raw)))
        echo.append(("_since", raw))
    query["last_updated"] = tuple(bounds)
    for raw in dict.fromkeys(by_name.get("_include", [])):  # once each, in their order
        query["include_patients"] = True
        echo.append(("_include", raw))
    # A cursor is a position in one order: it keeps it (whatever `_sort` says beside it), and
    # the links say the order the pages are in.
    sort = cast(SortName, by_name["_sort"][0]) if "_sort" in by_name else DEFAULT_SORT
    if "_cursor" in by_name:
        query["cursor"] = by_name["_cursor"][0]
        sort = cursor_sort(query["cursor"])
    if "_sort" in by_name or sort != DEFAULT_SORT:
        echo.append(("_sort", sort))
    query["sort"] = sort
    if "_summary" in by_name:
        query["summary_count"] = True
        echo.append(("_summary", "count"))
    if "_total" in by_name:
        # `_summary=count` asks for the total: it is counted whatever `_total` says.
        query["total"] = by_name["_total"][0] == "accurate" or "_summary" in by_name
        echo.append(("_total", by_name["_total"][0]))
    if "_totalMethod" in by_name:
        query["total"] = True
        echo.append(("_totalMethod", "count"))
    if "_count" in by_name:
        # FHIR lets a server return fewer than asked: above the maximum is the maximum.
        query["count"] = min(int(by_name["_count"][0]), MAX_COUNT)
    return SearchQuery(echo=tuple(echo), **query)


# --- paging cursors -------------------------------------------------------------------------


def encode_cursor(
    section: str,
    moment: datetime | None,
    row_id: uuid.UUID | None,
    sort: SortName = DEFAULT_SORT,
) -> str:
    """Where the next page starts: after ``(moment, row_id)`` in ``section``, or at the
    start of ``section`` when they are None (`Observation.<key>`, or `Procedure`); in an
    order other than the default, the order after a colon (`Observation:-date.<key>`)."""
    head = section if sort == DEFAULT_SORT else f"{section}:{sort}"
    if moment is None or row_id is None:
        return head
    return f"{head}.{encode_key(moment, row_id)}"


def cursor_sort(cursor: str) -> SortName:
    """The order a cursor's search is in (the default when it names none)."""
    head = cursor.partition(".")[0]
    order = head.partition(":")[2]
    if not order:
        return DEFAULT_SORT
    if order not in get_args(SortName):
        raise InvalidSearch.at_param("_cursor", PARAMS["_cursor"].message)
    return cast(SortName, order)


def decode_cursor(
    cursor: str, sections: Sequence[str]
) -> tuple[str, datetime | None, uuid.UUID | None]:
    """The section a cursor names and the row it is after (None, None: the section's start);
    its order is ``cursor_sort``'s."""
    head, dot, key = cursor.partition(".")
    section, colon, order = head.partition(":")
    try:
        if section not in sections:
            raise ValueError("another search's cursor")
        if colon and order not in get_args(SortName):
            raise ValueError("not an order")
        if not dot:
            return section, None, None
        moment, row_id = decode_key(key)
    except ValueError as exc:
        raise InvalidSearch.at_param("_cursor", PARAMS["_cursor"].message) from exc
    return section, moment, row_id
