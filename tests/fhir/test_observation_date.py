"""`GET /fhir/R4/Observation?date=`: the observation's effective time (when it was recorded),
with FHIR's prefixes and precision.

A value stands for the interval its precision names: `2025-05-01` is that whole day (UTC),
`2025-05` the month, `…T12:00:00Z` one second, `…T12:00:00.5Z` a tenth of one. An
observation's time is an instant, so `eq` finds those inside the interval, `ge` those at or
after its start, `gt` those at or after its end, `lt` those before its start and `le` those
before its end. Repeated `date` parameters must all hold.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import create_observation, create_patient
from tests.fhir.support import entries, fhir_get

# Around 1 May 2025 (UTC), to the microsecond: the edges of the day are the edges of `eq`.
TIMES = {
    "A": "2025-04-30T23:59:59.999999+00:00",
    "B": "2025-05-01T00:00:00+00:00",
    "C": "2025-05-01T12:00:00+00:00",
    "D": "2025-05-01T23:59:59.999999+00:00",
    "E": "2025-05-02T00:00:00+00:00",
}


@pytest.fixture
async def may_day(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A patient with one observation at each of TIMES; their ids by letter."""
    patient = await create_patient(client)
    ids = {}
    for letter, recorded_at in TIMES.items():
        observation = await create_observation(client, patient["id"], recorded_at=recorded_at)
        ids[observation["id"]] = letter
    return patient["id"], ids


async def letters(
    ehr: httpx.AsyncClient, may_day: tuple[str, dict[str, str]], **params: Any
) -> str:
    patient_id, ids = may_day
    bundle = await fhir_get(ehr, "Observation", patient=patient_id, **params)
    assert bundle["total"] == len(entries(bundle))
    return "".join(sorted(ids[resource["id"]] for resource in entries(bundle)))


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        # a day: the whole of it
        ("2025-05-01", "BCD"),
        ("eq2025-05-01", "BCD"),
        ("ge2025-05-01", "BCDE"),
        ("gt2025-05-01", "E"),
        ("lt2025-05-01", "A"),
        ("le2025-05-01", "ABCD"),
        # coarser and finer precision
        ("2025", "ABCDE"),
        ("2025-05", "BCDE"),
        ("lt2025-05", "A"),
        ("2025-05-01T12:00Z", "C"),  # a minute
        ("2025-05-01T12:00:00Z", "C"),  # a second
        ("gt2025-05-01T00:00:00Z", "CDE"),  # after that second: B is inside it
        ("ge2025-05-01T00:00:00Z", "BCDE"),
        ("le2025-04-30T23:59:59.999999Z", "A"),  # a microsecond
        ("lt2025-04-30T23:59:59.999999Z", ""),
        ("2025-05-01T23:59:59Z", "D"),  # the last second holds D's last microsecond
        # another zone: the same instants
        ("2025-05-01T14:00:00+02:00", "C"),
        ("lt2025-05-01T02:00:00+02:00", "A"),
        ("ge2025-04-30T19:00:00-05:00", "BCDE"),
        # days and months in other years
        ("2024", ""),
        ("ge2026", ""),
    ],
)
async def test_date_prefixes_and_precision(
    ehr: httpx.AsyncClient, may_day: tuple[str, dict[str, str]], date: str, expected: str
) -> None:
    assert await letters(ehr, may_day, date=date) == expected


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (["ge2025-05-01", "lt2025-05-02"], "BCD"),  # a half-open window: the day again
        (["gt2025-04-30", "le2025-05-01T12:00:00Z"], "BC"),
        (["ge2025-05-01T12:00:00Z", "le2025-05-01T12:00:00Z"], "C"),
        (["lt2025-05-01", "gt2025-05-01"], ""),  # both must hold: none can
        (["2025-05", "2025-05-01"], "BCD"),
    ],
)
async def test_repeated_dates_must_all_hold(
    ehr: httpx.AsyncClient,
    may_day: tuple[str, dict[str, str]],
    dates: list[str],
    expected: str,
) -> None:
    assert await letters(ehr, may_day, date=dates) == expected


async def test_date_is_when_recorded_and_last_updated_when_received(
    ehr: httpx.AsyncClient, may_day: tuple[str, dict[str, str]]
) -> None:
    """Observations received today but recorded in May 2025: `date` finds them by the
    recording, `_lastUpdated` by the receipt; together, both hold."""
    assert await letters(ehr, may_day, _lastUpdated="lt2025-06-01") == ""
    assert await letters(ehr, may_day, date="lt2025-06-01") == "ABCDE"
    assert await letters(ehr, may_day, date="2025-05-01", _lastUpdated="ge2025-06-01") == "BCD"
    bundle = await fhir_get(ehr, "Observation", patient=may_day[0], date="2025-05-01")
    times = sorted(resource["effectiveDateTime"] for resource in entries(bundle))
    assert times == [
        "2025-05-01T00:00:00.000000Z",
        "2025-05-01T12:00:00.000000Z",
        "2025-05-01T23:59:59.999999Z",
    ]


async def test_date_searches_across_patients_and_with_codes(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, may_day: tuple[str, dict[str, str]]
) -> None:
    other = await create_patient(client)
    vas = await create_observation(
        client, other["id"], instrument="pain-vas", value=40, recorded_at=TIMES["C"]
    )
    bundle = await fhir_get(ehr, "Observation", date="2025-05-01")
    assert bundle["total"] == 4  # B, C, D and the other patient's
    bundle = await fhir_get(ehr, "Observation", date="2025-05-01", code="pain-vas")
    assert [r["id"] for r in entries(bundle)] == [vas["id"]]


async def test_the_self_link_keeps_the_dates(
    ehr: httpx.AsyncClient, may_day: tuple[str, dict[str, str]]
) -> None:
    bundle = await fhir_get(
        ehr, "Observation", patient=may_day[0], date=["ge2025-05-01", "lt2025-05-02"], _count=1
    )
    for relation in ("self", "next"):
        url = next(link["url"] for link in bundle["link"] if link["relation"] == relation)
        assert "date=ge2025-05-01&date=lt2025-05-02" in url
    assert len(entries(bundle)) == 1
    assert bundle["total"] == 3
