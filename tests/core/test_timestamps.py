"""Every timestamp a request brings (a body's `recorded_at` or `performed_at`, a `since` or
`until`) is RFC 3339 with an offset and is kept in UTC (app/core/schemas.py ``Timestamp``).

UTC's calendar, as the service stores it, runs from 0001-01-01 to 9999-12-31: on its first day
a positive offset can reach back before it, on its last a negative one past it. The service
refuses those two combinations at any time of day (a 422 naming the field, never a 500), and
the OpenAPI document says so with a pattern on every timestamp, so that a time the document
admits is one the server takes (schemathesis's stateful phase found one that was not:
`0001-01-01T00:03:00.0+00:26`, 26 minutes before the calendar in UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from app.core.config import Settings
from app.core.schemas import CALENDAR_PATTERN, OUTSIDE_THE_CALENDAR, Timestamp
from app.main import create_app
from tests.factories import API, create_patient
from tests.support import assert_problem

OUTSIDE = [
    "0001-01-01T00:03:00.0+00:26",  # found by the stateful phase
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
]
# Within the calendar in UTC, but refused all the same: the rule is the offset's sign on the
# edge days, whatever the time of day, so that a pattern can state it.
ON_AN_EDGE_DAY = ["0001-01-01T12:00:00+01:00", "9999-12-31T00:00:00-01:00"]
KEPT = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00-05:00",
    "0001-01-02T00:00:00+14:00",
    "9999-12-30T23:59:59-01:00",
    "9999-12-31T23:59:59+05:00",
    "9999-12-31T23:59:59-00:00",
    "2024-02-29T12:30:00.123456+05:30",
]


@pytest.mark.parametrize("moment", [*OUTSIDE, *ON_AN_EDGE_DAY])
async def test_a_time_an_edge_days_offset_could_push_out_of_the_calendar_is_a_422(
    admin: httpx.AsyncClient, moment: str
) -> None:
    patient = await create_patient(admin)
    observations = f"{API}/patients/{patient['id']}/observations"
    body = {"instrument": "pain-nrs", "value": 3, "recorded_at": moment}
    problem = assert_problem(await admin.post(observations, json=body), 422)
    assert problem["errors"] == [{"loc": ["body", "recorded_at"], "msg": OUTSIDE_THE_CALENDAR}]
    assert (await admin.get(observations)).json()["items"] == []
    for url, name in ((observations, "since"), (observations, "until"), (f"{API}/audit", "since")):
        response = await admin.get(url, params={name: moment})
        assert_problem(response, 422, loc=["query", name])


async def test_a_time_in_utc_on_the_calendars_first_day_is_kept_and_read_back(
    admin: httpx.AsyncClient,
) -> None:
    patient = await create_patient(admin)
    observations = f"{API}/patients/{patient['id']}/observations"
    body = {"instrument": "pain-nrs", "value": 3, "recorded_at": "0001-01-01T00:00:00-05:00"}
    created = await admin.post(observations, json=body)
    assert created.status_code == 201, created.text
    read = await admin.get(observations, params={"since": "0001-01-01T00:00:00Z"})
    assert [item["id"] for item in read.json()["items"]] == [created.json()["id"]]
    assert read.json()["items"][0]["recorded_at"].startswith("0001-01-01T05:00:00")


@pytest.mark.parametrize("moment", [*OUTSIDE, *ON_AN_EDGE_DAY, *KEPT, "0001-01-01t00:00:00+01:00"])
def test_the_documents_pattern_admits_exactly_the_times_the_server_keeps(moment: str) -> None:
    try:
        TypeAdapter(Timestamp).validate_python(moment)
        kept = True
    except ValidationError:
        kept = False
    assert (re.search(CALENDAR_PATTERN, moment) is not None) == kept


def _timestamps(node: Any, components: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every date-time schema in ``node``, through the components it refers to."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield from _timestamps(components[node["$ref"].rsplit("/", 1)[-1]], components)
        if node.get("format") == "date-time":
            yield node
        for value in node.values():
            yield from _timestamps(value, components)
    elif isinstance(node, list):
        for item in node:
            yield from _timestamps(item, components)


def test_every_timestamp_a_request_takes_carries_the_pattern() -> None:
    document = create_app(Settings()).openapi()
    requests = [
        [operation.get("parameters", []), operation.get("requestBody", {})]
        for item in document["paths"].values()
        for operation in item.values()
    ]
    timestamps = list(_timestamps(requests, document["components"]["schemas"]))
    # since and until (observations), since (audit), recorded_at (one, and in a batch),
    # performed_at
    assert len(timestamps) >= 6
    assert all(schema["pattern"] == CALENDAR_PATTERN for schema in timestamps), timestamps
