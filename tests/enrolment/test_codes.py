"""Enrolment codes: a clinician makes one for a patient; it is shown once, typable by a person,
and only a slow hash of it is kept."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import app.models  # noqa: F401  (every table in Base.metadata)
from app.core.db import Base
from app.enrolment import codes
from app.enrolment.models import EnrolmentCode
from tests.enrolment.support import code_row, new_code
from tests.factories import API, create_patient
from tests.support import assert_problem

CODE_SHAPE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def parse_time(raw: str) -> datetime:
    return datetime.fromisoformat(raw)


async def every_stored_value(engine: AsyncEngine) -> list[str]:
    values: list[str] = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                values += [repr(value) for value in row]
    return values


async def code_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(EnrolmentCode)) or 0)


async def test_a_clinician_makes_a_code_the_patient_can_type(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    before = datetime.now(UTC)
    response = await client.post(f"{API}/patients/{patient['id']}/enrolments", json={})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"id", "code", "expires_at", "uri"}
    assert CODE_SHAPE.match(body["code"]), body["code"]
    # 24 hours unless asked otherwise
    expires_at = parse_time(body["expires_at"])
    assert before + timedelta(hours=24) <= expires_at <= datetime.now(UTC) + timedelta(hours=24)


async def test_the_uri_carries_this_server_and_the_code(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    uri = urlsplit(issued["uri"])
    assert (uri.scheme, uri.netloc) == ("outcomes", "enrol")
    assert parse_qs(uri.query) == {"server": ["http://test"], "code": [issued["code"]]}


async def test_a_post_without_a_body_makes_a_code_too(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    response = await client.post(f"{API}/patients/{patient['id']}/enrolments")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("hours", [0.25, 1.5, 72])
async def test_expires_in_hours_sets_the_expiry(client: httpx.AsyncClient, hours: float) -> None:
    patient = await create_patient(client)
    before = datetime.now(UTC)
    issued = await new_code(client, patient["id"], expires_in_hours=hours)
    expires_at = parse_time(issued["expires_at"])
    lifetime = timedelta(hours=hours)
    assert before + lifetime <= expires_at <= datetime.now(UTC) + lifetime


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in_hours": 0},
        {"expires_in_hours": -1},
        {"expires_in_hours": 72.01},
        {"expires_in_hours": 1000},
        {"expires_in_hours": "soon"},
        {"expires_in_hours": None},
        {"code": "AAAA-BBBB-CCCC"},
        {"patient_id": str(uuid.uuid4())},
    ],
)
async def test_invalid_requests_are_422_and_make_no_code(
    client: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any]
) -> None:
    patient = await create_patient(client)
    response = await client.post(f"{API}/patients/{patient['id']}/enrolments", json=body)
    assert_problem(response, 422, loc=["body", next(iter(body))])
    assert await code_count(engine) == 0


async def test_a_code_for_an_unknown_patient_is_404(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    assert_problem(await client.post(f"{API}/patients/{uuid.uuid4()}/enrolments", json={}), 404)
    response = await client.post(f"{API}/patients/not-a-uuid/enrolments", json={})
    assert_problem(response, 422, loc=["path", "patient_id"])
    assert await code_count(engine) == 0


async def test_codes_are_random_with_40_secret_bits_beyond_their_public_part(
    client: httpx.AsyncClient,
) -> None:
    patient = await create_patient(client)
    issued = [(await new_code(client, patient["id"]))["code"] for _ in range(12)]
    assert len(set(issued)) == len(issued)
    # The public part names the code: no two live codes share one.
    assert len({code[:4] for code in issued}) == len(issued)
    # 8 characters of a 32-letter alphabet after it: 40 bits.
    assert codes.SECRET_LENGTH * 5 >= 40
    assert len(codes.ALPHABET) == 32
    assert all(
        len(code.replace("-", "")) == codes.LOOKUP_LENGTH + codes.SECRET_LENGTH for code in issued
    )


async def test_only_a_slow_hash_of_the_code_is_stored(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    canonical = issued["code"].replace("-", "")
    secret = canonical[4:]
    row = await code_row(engine, issued["id"])
    assert row.lookup == canonical[:4]  # the public part, by design
    assert row.code_hash.startswith("scrypt$")
    assert codes.verify_code(canonical, row.code_hash)
    assert (row.failed_attempts, row.used_at, row.burned_at) == (0, None, None)
    stored = await every_stored_value(engine)
    assert not [value for value in stored if secret in value]


async def test_an_idempotency_key_does_not_keep_the_code(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A replay would have to keep the response, and the response holds the code."""
    patient = await create_patient(client)
    url = f"{API}/patients/{patient['id']}/enrolments"
    headers = {"Idempotency-Key": "enrol-once-1"}
    first = await client.post(url, json={}, headers=headers)
    assert first.status_code == 201, first.text
    secret = first.json()["code"].replace("-", "")[4:]
    again = await client.post(url, json={}, headers=headers)
    assert_problem(again, 409)
    assert secret not in again.text
    assert await code_count(engine) == 1
    assert not [value for value in await every_stored_value(engine) if secret in value]


# --- what a person may type ------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "K7QM-3XPA-9D2H",
        "k7qm-3xpa-9d2h",
        "K7QM3XPA9D2H",
        "k7qm 3xpa 9d2h",
        " K7QM-3XPA-9D2H ",
    ],
)
def test_a_code_is_read_in_any_case_with_or_without_dashes(typed: str) -> None:
    assert codes.canonical(typed) == "K7QM3XPA9D2H"


def test_letters_that_look_like_digits_are_read_as_those_digits() -> None:
    """Crockford's base32 has no I, L or O: a person who types one meant 1, 1 or 0."""
    assert codes.canonical("I0LO-1111-0000") == "101011110000"
    assert codes.canonical("iloo-abcd-efgh") == "1100ABCDEFGH"


@pytest.mark.parametrize(
    "typed", ["", "K7QM-3XPA-9D2", "K7QM-3XPA-9D2HX", "K7QM-3XPA-9D2U", "K7QM-3XPA-9D2!", "é" * 12]
)
def test_what_cannot_be_a_code_is_refused(typed: str) -> None:
    assert codes.canonical(typed) is None


def test_the_grouped_form_reads_back() -> None:
    code = codes.new_code()
    assert CODE_SHAPE.match(codes.grouped(code))
    assert codes.canonical(codes.grouped(code)) == code
