"""Search parameter parsing alone: dates and their precision, tokens, references, strictness."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.pagination import encode_key
from app.fhir import terminology as t
from app.fhir.search import (
    PARAMS,
    InvalidSearch,
    NotAcceptable,
    SearchQuery,
    TimeBound,
    _python_pattern,
    admits,
    cursor_sort,
    declared,
    decode_cursor,
    encode_cursor,
    external_ids_for_token,
    instruments_for_token,
    parse_date_param,
    parse_date_range,
    parse_instant,
    parse_search,
    patient_reference,
)

OBSERVATION = ("patient", "code", "_lastUpdated", "_count", "_cursor", "_format")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "start", "end"),
    [
        ("2026", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1)),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        ("2026-02-28", utc(2026, 2, 28), utc(2026, 3, 1)),
        ("2026-02-28T10:15Z", utc(2026, 2, 28, 10, 15), utc(2026, 2, 28, 10, 16)),
        ("2026-02-28T10:15:30Z", utc(2026, 2, 28, 10, 15, 30), utc(2026, 2, 28, 10, 15, 31)),
        (
            "2026-02-28T10:15:30.5Z",
            utc(2026, 2, 28, 10, 15, 30, 500000),
            utc(2026, 2, 28, 10, 15, 30, 600000),
        ),
        (
            "2026-02-28T10:15:30.123456Z",
            utc(2026, 2, 28, 10, 15, 30, 123456),
            utc(2026, 2, 28, 10, 15, 30, 123457),
        ),
        # beyond microseconds: the database's precision
        (
            "2026-02-28T10:15:30.1234567Z",
            utc(2026, 2, 28, 10, 15, 30, 123456),
            utc(2026, 2, 28, 10, 15, 30, 123457),
        ),
        ("2026-02-28T12:15:30+02:00", utc(2026, 2, 28, 10, 15, 30), utc(2026, 2, 28, 10, 15, 31)),
        # an unencoded "+" arrives as a space
        ("2026-02-28T12:15:30 02:00", utc(2026, 2, 28, 10, 15, 30), utc(2026, 2, 28, 10, 15, 31)),
        ("2026-02-28T05:15:30-05:00", utc(2026, 2, 28, 10, 15, 30), utc(2026, 2, 28, 10, 15, 31)),
    ],
)
def test_a_value_stands_for_the_interval_of_its_precision(
    raw: str, start: datetime, end: datetime
) -> None:
    assert parse_date_range(raw) == (start, end)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "26",
        "2026-13",
        "2026-02-30",
        "2026-02-28T10:15:30",  # a time needs a zone
        "2026-02-28T25:00:00Z",
        "2026-02-28T10:15:30+15:00",
        "yesterday",
        "2026-02-28 10:15:30Z",
    ],
)
def test_malformed_dates(raw: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies with the fault)
        parse_date_range(raw)


def test_prefixes_reduce_to_lower_and_upper_bounds() -> None:
    start, end = utc(2026, 1, 1, 8, 0, 0), utc(2026, 1, 1, 8, 0, 1)
    value = "2026-01-01T08:00:00Z"
    assert parse_date_param(f"ge{value}") == (TimeBound(">=", start),)
    assert parse_date_param(f"gt{value}") == (TimeBound(">=", end),)
    assert parse_date_param(f"lt{value}") == (TimeBound("<", start),)
    assert parse_date_param(f"le{value}") == (TimeBound("<", end),)
    assert parse_date_param(f"eq{value}") == (TimeBound(">=", start), TimeBound("<", end))
    assert parse_date_param(value) == parse_date_param(f"eq{value}")


@pytest.mark.parametrize("prefix", ["ne", "sa", "eb", "ap", "xx"])
def test_unsupported_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="not supported"):
        parse_date_param(f"{prefix}2026-01-01")


def test_since_is_an_instant() -> None:
    assert parse_instant("2026-01-01T08:00:00.25Z") == utc(2026, 1, 1, 8, 0, 0, 250000)
    for raw in ("2026-01-01", "2026-01-01T08:00Z", "2026"):
        with pytest.raises(ValueError, match="instant"):
            parse_instant(raw)


@pytest.mark.parametrize(
    ("token", "instruments"),
    [
        ("72514-3", {"pain-nrs"}),
        ("http://loinc.org|72514-3", {"pain-nrs"}),
        ("http://loinc.org|97909-6", {"odi"}),
        ("http://loinc.org|", {"pain-nrs", "odi"}),
        (f"{t.INSTRUMENT_SYSTEM}|pain-vas", {"pain-vas"}),
        ("schober", {"schober"}),
        ("pain-vas,72514-3", {"pain-vas", "pain-nrs"}),
        ("|pain-nrs", set()),  # a coding without a system: none of ours
        ("http://snomed.info/sct|72514-3", set()),
        ("http://loinc.org|pain-nrs", set()),
        ("8480-6", set()),
    ],
)
def test_code_tokens(token: str, instruments: set[str]) -> None:
    assert instruments_for_token(token) == instruments


def test_every_instrument_is_findable_by_its_own_code() -> None:
    everything = instruments_for_token(f"{t.INSTRUMENT_SYSTEM}|")
    assert len(everything) == 10


def test_patient_references() -> None:
    pid = uuid.uuid4()
    assert patient_reference(str(pid)) == pid
    assert patient_reference(f"Patient/{pid}") == pid
    assert patient_reference("Patient/not-ours") is None
    with pytest.raises(ValueError, match="Patient"):
        patient_reference(f"Practitioner/{pid}")
    with pytest.raises(ValueError, match="Patient"):
        patient_reference(f"Patient/{pid}/_history/1")


def test_a_full_query() -> None:
    pid = uuid.uuid4()
    query = parse_search(
        [
            ("patient", f"Patient/{pid}"),
            ("code", "http://loinc.org|72514-3,pain-vas"),
            ("code", "pain-vas,odi"),  # repeated: AND
            ("_lastUpdated", "ge2026-01-01"),
            ("_lastUpdated", "lt2026-02-01"),
            ("_count", "10"),
        ],
        supported=OBSERVATION,
    )
    assert query.patient_id == pid
    assert query.instruments == frozenset({"pain-vas"})
    assert query.last_updated == (
        TimeBound(">=", utc(2026, 1, 1)),
        TimeBound("<", utc(2026, 2, 1)),
    )
    assert query.count == 10
    assert not query.matches_nothing
    assert query.echo[0] == ("patient", f"Patient/{pid}")


def test_defaults_and_limits() -> None:
    assert parse_search([], supported=OBSERVATION).count == 50
    assert parse_search([("_count", "0")], supported=OBSERVATION).count == 0
    # FHIR lets a server return fewer than asked: above the maximum is the maximum.
    assert parse_search([("_count", "100000")], supported=OBSERVATION).count == 500


@pytest.mark.parametrize(
    ("items", "name"),
    [
        ([("_count", "-1")], "_count"),
        ([("_count", "ten")], "_count"),
        ([("_count", "1"), ("_count", "2")], "_count"),
        ([("patient", "a"), ("patient", "b")], "patient"),
        ([("patient", f"{uuid.uuid4()},{uuid.uuid4()}")], "patient"),
        ([("patient", "Practitioner/1")], "patient"),
        ([("patient", "")], "patient"),
        ([("code:text", "pain")], "code:text"),
        ([("patient:Patient", "1")], "patient:Patient"),
        ([("_lastUpdated", "ne2026")], "_lastUpdated"),
        ([("_lastUpdated", "2026-01-01T10:00:00")], "_lastUpdated"),
        ([("_cursor", "x" * 513)], "_cursor"),
    ],
)
def test_invalid_parameters(items: list[tuple[str, str]], name: str) -> None:
    with pytest.raises(InvalidSearch) as caught:
        parse_search(items, supported=OBSERVATION)
    assert caught.value.errors[0]["loc"] == ["query", name]


def test_unknown_parameters_are_refused_unless_lenient() -> None:
    items = [("date", "ge2026"), ("patient", "Patient/x"), ("_sort", "date")]
    with pytest.raises(InvalidSearch, match=r"_sort, date"):
        parse_search(items, supported=OBSERVATION)
    lenient = parse_search(items, supported=OBSERVATION, strict=False)
    assert lenient.echo == (("patient", "Patient/x"),)  # the self link shows what was used
    assert lenient.matches_nothing  # an id this server never issues


def test_only_json_is_spoken() -> None:
    for fmt in ("json", "application/json", "application/fhir+json"):
        parse_search([("_format", fmt)], supported=OBSERVATION)
    with pytest.raises(NotAcceptable):
        parse_search([("_format", "xml")], supported=OBSERVATION)


def test_a_code_no_instrument_has_matches_nothing() -> None:
    assert parse_search(
        [("code", "http://loinc.org|1234-5")], supported=OBSERVATION
    ).matches_nothing


def test_cursors_round_trip_and_refuse_garbage() -> None:
    at, row = utc(2026, 1, 1, 8, 0, 0, 1), uuid.uuid4()
    assert decode_cursor(encode_cursor("Observation", at, row), ["Observation"]) == (
        "Observation",
        at,
        row,
    )
    assert decode_cursor(encode_cursor("Procedure", None, None), ["CarePlan", "Procedure"]) == (
        "Procedure",
        None,
        None,
    )
    for bad in ("garbage", encode_cursor("CarePlan", at, row), "Observation.", "Observation.1"):
        with pytest.raises(InvalidSearch):
            decode_cursor(bad, ["Observation"])
    with pytest.raises(ValueError, match="aware"):
        encode_cursor("Observation", at.replace(tzinfo=None), row)


# --- the declarations: what the OpenAPI schema admits is exactly what the server reads ---------


def test_the_date_pattern_admits_every_calendar_day_of_1900_to_2999_and_nothing_else() -> None:
    day_pattern = re.compile(_python_pattern(PARAMS["_lastUpdated"].schema["pattern"]))
    for year in range(1899, 3001):
        for month in range(1, 13):
            for day in range(1, 32):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    real = 1900 <= date(year, month, day).year <= 2999
                except ValueError:
                    real = False
                assert (day_pattern.search(text) is not None) == real, text


@pytest.mark.parametrize("name", ["patient", "code", "_lastUpdated", "_since", "_cursor"])
@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_every_value_a_declaration_admits_is_read(name: str, data: st.DataObject) -> None:
    schema = declared(name, ["Observation"])
    schema = schema.get("items", schema)
    if "pattern" in schema:
        value = data.draw(st.from_regex(_python_pattern(schema["pattern"])))
    else:
        value = data.draw(st.text(min_size=schema.get("minLength", 0)))
    query = parse_search(
        [(name, value)], supported=(*OBSERVATION, "_since"), sections=["Observation"]
    )
    assert query.echo or name in ("_cursor",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_count", "²"),  # a digit to str.isdigit, not to int()
        ("_count", "1" * 10),
        ("_count", "+5"),
        ("_lastUpdated", "0001-01-01T00:00:00+01:00"),  # before what a datetime holds, in UTC
        ("_lastUpdated", "9999-12-31"),  # its end is after it
        ("_lastUpdated", "2026-01-01T10:00:00+14:30"),
        ("_lastUpdated", "2026-01-01\n"),
        ("_since", "2026-01-01T08:00:00.1234567890Z"),
        ("patient", "Patient/" + "a" * 65),
        ("patient", "Patient/a b"),
        ("_cursor", "Procedure"),  # another search's
        ("_cursor", "Observation." + "1" * 19 + "." + "0" * 32),
        ("code", ""),
    ],
)
def test_a_value_no_declaration_admits_is_a_400_naming_it(name: str, value: str) -> None:
    assert not admits(name, value, ["Observation"])
    with pytest.raises(InvalidSearch) as caught:
        parse_search([(name, value)], supported=(*OBSERVATION, "_since"), sections=["Observation"])
    assert caught.value.errors[0]["loc"] == ["query", name]


def test_any_position_a_cursor_can_spell_is_a_position() -> None:
    row = uuid.uuid4()
    # Beyond what a datetime holds: before every row, or after every row.
    first = decode_cursor(f"Observation.-{'9' * 18}.{row.hex}", ["Observation"])
    last = decode_cursor(f"Observation.{'9' * 18}.{row.hex.upper()}", ["Observation"])
    assert first == ("Observation", datetime.min.replace(tzinfo=UTC), row)
    assert last == ("Observation", datetime.max.replace(tzinfo=UTC), row)


# --- v2: identifier, date, _sort, _summary, _total, _include -----------------------------------

SYSTEM = t.PATIENT_IDENTIFIER_SYSTEM
PATIENT = ("identifier", "_lastUpdated", "_sort", "_summary", "_total", "_totalMethod", "_count",
           "_cursor", "_format")  # fmt: skip
OBSERVATION_V2 = (*OBSERVATION, "date", "_include", "_sort", "_summary", "_total", "_totalMethod")


@pytest.mark.parametrize(
    ("token", "external_ids"),
    [
        ("MRN-1", {"MRN-1"}),  # any system: ours
        (f"{SYSTEM}|MRN-1", {"MRN-1"}),
        ("urn:oid:1.2.3|MRN-1", set()),  # another system
        ("|MRN-1", set()),  # no system: ours always has one
        ("MRN-1,MRN-2", {"MRN-1", "MRN-2"}),
        (f"{SYSTEM}|MRN-1,urn:oid:1.2.3|MRN-2,MRN-3", {"MRN-1", "MRN-3"}),
        ("mrn-1", {"mrn-1"}),  # exact: the database compares as given
        (",", set()),
        (f"{SYSTEM}|", None),  # every patient with an MRN
        (f"MRN-1,{SYSTEM}|", None),
    ],
)
def test_identifier_tokens(token: str, external_ids: set[str] | None) -> None:
    matched = external_ids_for_token(token, SYSTEM)
    assert matched == (None if external_ids is None else frozenset(external_ids))


@pytest.mark.parametrize(
    ("token", "external_ids"),
    [
        (r"A\,B", {"A,B"}),
        (r"A\|B", {"A|B"}),
        (rf"{SYSTEM}|A\|B\,C", {"A|B,C"}),
        (r"A\\,B", {"A\\", "B"}),  # an escaped backslash, then a separator
        (r"A\$B", {"A$B"}),
        (r"A\xB", {r"A\xB"}),  # a backslash before anything else is itself
        ("A\\", {"A\\"}),
        ("A,B|C", {"A"}),  # unescaped: `B|C` is C in the system B
    ],
)
def test_identifier_values_escape_fhirs_separators(token: str, external_ids: set[str]) -> None:
    assert external_ids_for_token(token, SYSTEM) == frozenset(external_ids)


def test_identifier_needs_the_servers_system_and_ands_its_repeats() -> None:
    query = parse_search(
        [("identifier", "MRN-1,MRN-2"), ("identifier", f"{SYSTEM}|MRN-2,MRN-3")],
        supported=PATIENT,
        sections=["Patient"],
        identifier_system=SYSTEM,
    )
    assert query.external_ids == frozenset({"MRN-2"})
    assert not query.with_external_id
    assert query.echo == (("identifier", "MRN-1,MRN-2"), ("identifier", f"{SYSTEM}|MRN-2,MRN-3"))
    anyone = parse_search(
        [("identifier", f"{SYSTEM}|")], supported=PATIENT, identifier_system=SYSTEM
    )
    assert anyone.external_ids is None
    assert anyone.with_external_id
    nobody = parse_search(
        [("identifier", "MRN-1"), ("identifier", "MRN-2")],
        supported=PATIENT,
        identifier_system=SYSTEM,
    )
    assert nobody.matches_nothing
    with pytest.raises(ValueError, match="identifier system"):
        parse_search([("identifier", "MRN-1")], supported=PATIENT)


def test_date_is_the_effective_time_with_the_same_prefixes_as_last_updated() -> None:
    query = parse_search(
        [
            ("date", "ge2026-05-01"),
            ("date", "lt2026-05-02T00:00:00+02:00"),
            ("_lastUpdated", "2026"),
        ],
        supported=OBSERVATION_V2,
        sections=["Observation"],
    )
    assert query.recorded == (
        TimeBound(">=", utc(2026, 5, 1)),
        TimeBound("<", utc(2026, 5, 1, 22)),
    )
    assert query.last_updated == (TimeBound(">=", utc(2026, 1, 1)), TimeBound("<", utc(2027, 1, 1)))
    day = parse_search([("date", "2026-05-01")], supported=OBSERVATION_V2).recorded
    assert day == parse_search([("date", "eq2026-05-01")], supported=OBSERVATION_V2).recorded
    assert day == (TimeBound(">=", utc(2026, 5, 1)), TimeBound("<", utc(2026, 5, 2)))


def test_result_parameters() -> None:
    def parse(*items: tuple[str, str]) -> SearchQuery:
        return parse_search(list(items), supported=OBSERVATION_V2, sections=["Observation"])

    plain = parse()
    assert (plain.sort, plain.total, plain.summary_count, plain.include_patients) == (
        "_lastUpdated", True, False, False
    )  # fmt: skip
    assert parse(("_sort", "-date")).sort == "-date"
    assert parse(("_summary", "count")).summary_count
    assert not parse(("_total", "none")).total
    assert parse(("_total", "accurate")).total
    assert parse(("_summary", "count"), ("_total", "none")).total  # a count is counted
    assert parse(("_totalMethod", "count")).total  # fhirpy's count()
    included = parse(
        ("_include", "Observation:patient"), ("_include", "Observation:patient:Patient")
    )
    assert included.include_patients
    assert included.echo == (
        ("_include", "Observation:patient"),
        ("_include", "Observation:patient:Patient"),
    )
    twice = parse(("_include", "Observation:patient"), ("_include", "Observation:patient"))
    assert twice.echo == (("_include", "Observation:patient"),)


def test_a_cursor_keeps_its_order_and_the_links_say_it() -> None:
    row = uuid.uuid4()
    at = utc(2026, 5, 1, 8)
    newest_first = encode_cursor("Observation", at, row, "-date")
    assert newest_first == f"Observation:-date.{encode_key(at, row)}"
    assert cursor_sort(newest_first) == "-date"
    assert decode_cursor(newest_first, ["Observation"]) == ("Observation", at, row)
    assert encode_cursor("Observation", at, row) == f"Observation.{encode_key(at, row)}"
    assert encode_cursor("Procedure", None, None, "-_lastUpdated") == "Procedure:-_lastUpdated"
    # the cursor's order, whatever `_sort` beside it says
    query = parse_search(
        [("_sort", "date"), ("_cursor", newest_first)],
        supported=OBSERVATION_V2,
        sections=["Observation"],
    )
    assert query.sort == "-date"
    assert ("_sort", "-date") in query.echo
    # an order the cursor names is echoed even without `_sort`; the default is not
    assert ("_sort", "-date") in parse_search(
        [("_cursor", newest_first)], supported=OBSERVATION_V2, sections=["Observation"]
    ).echo
    assert "_sort" not in dict(parse_search([], supported=OBSERVATION_V2).echo)
    with pytest.raises(InvalidSearch):
        decode_cursor(f"Observation:value.{encode_key(at, row)}", ["Observation"])


def test_each_search_declares_its_own_orders_includes_and_cursors() -> None:
    assert declared("_sort", ["Observation"])["enum"] == [
        "_lastUpdated",
        "-_lastUpdated",
        "date",
        "-date",
    ]
    for resource_type in ("Patient", "Procedure", "CarePlan"):
        assert declared("_sort", [resource_type])["enum"] == ["_lastUpdated", "-_lastUpdated"]
        assert not admits("_cursor", f"{resource_type}:date", [resource_type])
        assert admits("_cursor", f"{resource_type}:-_lastUpdated", [resource_type])
    for resource_type in ("Observation", "Procedure", "CarePlan"):
        assert declared("_include", [resource_type])["items"]["enum"] == [
            f"{resource_type}:patient",
            f"{resource_type}:patient:Patient",
        ]
    assert admits("_cursor", "Observation:-date", ["Observation"])
    assert not admits(
        "_cursor", "Observation:_lastUpdated", ["Observation"]
    )  # the default: unnamed
    # `$everything` pages through its types in one order
    assert not admits("_cursor", "Observation:-date", ["Patient", "Observation"])


@pytest.mark.parametrize(
    ("name", "sections", "supported"),
    [
        ("identifier", ["Patient"], PATIENT),
        ("date", ["Observation"], OBSERVATION_V2),
        ("_sort", ["Observation"], OBSERVATION_V2),
        ("_include", ["Procedure"], ("patient", "_include")),
        ("_cursor", ["Observation"], OBSERVATION_V2),
    ],
)
@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_every_value_the_new_declarations_admit_is_read(
    name: str, sections: list[str], supported: tuple[str, ...], data: st.DataObject
) -> None:
    schema = declared(name, sections)
    schema = schema.get("items", schema)
    if "enum" in schema:
        value = data.draw(st.sampled_from(schema["enum"]))
    else:
        value = data.draw(st.from_regex(_python_pattern(schema["pattern"])))
    query = parse_search(
        [(name, value)], supported=supported, sections=sections, identifier_system=SYSTEM
    )
    assert query.echo or name == "_cursor"


@pytest.mark.parametrize(
    ("name", "value", "sections"),
    [
        ("identifier", "", ["Patient"]),
        ("identifier", "x" * 1025, ["Patient"]),
        ("date", "ne2026-05-01", ["Observation"]),
        ("date", "2026-05-01T10:00:00", ["Observation"]),
        ("_sort", "date", ["Procedure"]),
        ("_sort", "-date,_lastUpdated", ["Observation"]),
        ("_sort", "status", ["Observation"]),
        ("_summary", "true", ["Observation"]),
        ("_total", "estimate", ["Observation"]),
        ("_totalMethod", "estimate", ["Observation"]),
        ("_include", "Observation:patient", ["Procedure"]),
        ("_include", "*", ["Observation"]),
        ("_cursor", "Observation:-date", ["Procedure"]),
        ("_cursor", "Procedure:-date", ["Procedure"]),
    ],
)
def test_a_new_value_no_declaration_admits_is_a_400_naming_it(
    name: str, value: str, sections: list[str]
) -> None:
    assert not admits(name, value, sections)
    supported = (*OBSERVATION_V2, "identifier")
    with pytest.raises(InvalidSearch) as caught:
        parse_search(
            [(name, value)], supported=supported, sections=sections, identifier_system=SYSTEM
        )
    assert caught.value.errors[0]["loc"] == ["query", name]
