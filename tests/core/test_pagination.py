"""Keyset cursors: the declared pattern says completely what a cursor is, so every string the
OpenAPI schema admits is a position the server reads, and every other string is a 422."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config import Settings
from app.core.pagination import CURSOR_PATTERN, decode_key, encode_key
from app.main import create_app
from tests.factories import API, create_patient
from tests.support import assert_problem

# What the schema declares, as Python's `re` reads an ECMA pattern (`$`: the end of the text).
ADMITTED = CURSOR_PATTERN.removesuffix("$") + r"\Z"


def test_the_cursor_parameter_declares_the_pattern() -> None:
    document = create_app(Settings()).openapi()
    parameters = document["paths"][f"{API}/patients"]["get"]["parameters"]
    [cursor] = [p for p in parameters if p["name"] == "cursor"]
    assert {"type": "string", "pattern": CURSOR_PATTERN} in cursor["schema"]["anyOf"]


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(st.from_regex(ADMITTED))
def test_every_string_the_pattern_admits_is_a_position(cursor: str) -> None:
    moment, row_id = decode_key(cursor)
    assert moment.tzinfo is UTC
    assert row_id.hex == cursor.rpartition(".")[2].lower()


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 3, 11, 0, 0, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before 1970: negative
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
    ],
)
def test_a_rows_key_round_trips_and_matches_the_pattern(moment: datetime) -> None:
    row_id = uuid.uuid4()
    key = encode_key(moment, row_id)
    assert re.search(ADMITTED, key)
    assert decode_key(key) == (moment, row_id)


async def test_a_cursor_is_the_position_after_a_row(client: httpx.AsyncClient) -> None:
    first, second, third = [await create_patient(client, name=f"P{n}") for n in range(3)]
    created = datetime.fromisoformat(first["created_at"])
    # The position of the first patient, spelled as the pattern says: the rest follow it.
    after_first = encode_key(created, uuid.UUID(first["id"]))

    response = await client.get(f"{API}/patients", params={"cursor": after_first})

    assert response.status_code == 200, response.text
    assert [p["id"] for p in response.json()["items"]] == [second["id"], third["id"]]


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "1." + "0" * 31, "1." + "g" * 32, "1" * 19 + "." + "0" * 32, "1.0\n"],
)
async def test_a_string_the_pattern_refuses_is_a_422_naming_the_cursor(
    client: httpx.AsyncClient, cursor: str
) -> None:
    response = await client.get(f"{API}/patients", params={"cursor": cursor})
    assert_problem(response, 422, loc=["query", "cursor"])
