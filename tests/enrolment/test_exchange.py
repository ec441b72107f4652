"""Exchanging an enrolment code at the token endpoint: once, for a device of the code's patient
with an access token and a refresh token; a wrong, expired, used or burned code gets the same
`invalid_grant`, and five wrong guesses at a code burn it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.auth.models import ApiToken
from app.auth.tokens import token_hash
from app.enrolment import codes
from tests.enrolment.support import (
    ENROLMENT_GRANT,
    PATIENT_APP_SCOPE,
    ago,
    assert_invalid_grant,
    assert_oauth_error,
    assert_token_answer,
    code_row,
    devices_of,
    exchange,
    new_code,
    refresh,
    set_code,
    token_request,
)
from tests.factories import API, create_patient
from tests.factories import ago as iso_ago
from tests.support import MakeClient, assert_problem


def wrong_guess(code: str) -> str:
    """The same public part, another secret: a guess at this code."""
    last = code[-1]
    other = codes.ALPHABET[(codes.ALPHABET.index(last) + 1) % len(codes.ALPHABET)]
    return code[:-1] + other


async def audit_row(engine: AsyncEngine, response: httpx.Response) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(AuditEvent.__table__).where(
                    AuditEvent.request_id == response.headers["x-request-id"]
                )
            )
        ).all()
    assert len(rows) == 1, rows
    return dict(rows[0]._mapping)


# --- the happy path ---------------------------------------------------------------------------


async def test_a_patient_app_enrols_with_a_code_and_records_a_pain_score(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    """The clinician makes a code; the patient types it into the app; the app exchanges it and
    posts the patient's pain score. Nobody copies a token anywhere."""
    patient = await create_patient(client)
    other = await create_patient(client)
    issued = await new_code(client, patient["id"])

    response = await exchange(anonymous, issued["code"], device_name="Ana's iPhone")
    body = assert_token_answer(response, patient["id"])

    app = make_client(body["access_token"])
    score = {"instrument": "pain-nrs", "value": 6, "recorded_at": iso_ago(hours=1)}
    recorded = await app.post(f"{API}/patients/{patient['id']}/observations", json=score)
    assert recorded.status_code == 201, recorded.text
    read = await app.get(f"{API}/patients/{patient['id']}/observations")
    assert [item["value"] for item in read.json()["items"]] == [6]
    # Bound to its patient, like any patient token.
    assert_problem(await app.get(f"{API}/patients/{other['id']}/observations"), 404)
    assert_problem(await app.get(f"{API}/patients"), 403)

    # The staff see the device; the token is the device's, with the patient app's scopes.
    [device] = await devices_of(engine, patient["id"])
    assert device.name == "Ana's iPhone"
    assert device.enrolment_id == uuid.UUID(issued["id"])
    assert device.last_seen_at is not None
    assert device.revoked_at is None
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(
                    ApiToken.role, ApiToken.patient_id, ApiToken.scope, ApiToken.device_id
                ).where(ApiToken.token_hash == token_hash(body["access_token"]))
            )
        ).one()
    assert tuple(stored) == ("patient", uuid.UUID(patient["id"]), PATIENT_APP_SCOPE, device.id)

    # The code is spent.
    assert (await code_row(engine, issued["id"])).used_at is not None
    # The exchange and the recording are audited as the device's.
    exchanged = await audit_row(engine, response)
    assert (exchanged["role"], exchanged["action"], exchanged["resource_type"]) == (
        "patient", "create", "token"
    )  # fmt: skip
    assert (exchanged["outcome"], exchanged["status"]) == ("allowed", 200)
    assert exchanged["patient_id"] == uuid.UUID(patient["id"])
    assert exchanged["device_id"] == device.id
    assert (await audit_row(engine, recorded))["device_id"] == device.id


async def test_the_code_may_be_typed_loosely(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    code = (await new_code(client, patient["id"]))["code"]
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert_token_answer(await exchange(anonymous, typed), patient["id"])


async def test_each_device_gets_its_own_tokens(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    phone = assert_token_answer(
        await exchange(anonymous, (await new_code(client, patient["id"]))["code"], "phone"),
        patient["id"],
    )
    tablet = assert_token_answer(
        await exchange(anonymous, (await new_code(client, patient["id"]))["code"], "tablet"),
        patient["id"],
    )
    assert phone["access_token"] != tablet["access_token"]
    assert phone["refresh_token"] != tablet["refresh_token"]
    assert [d.name for d in await devices_of(engine, patient["id"])] == ["phone", "tablet"]


# --- codes that will not do -----------------------------------------------------------------


async def test_an_expired_code_is_refused(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"], expires_in_hours=1)
    await set_code(engine, issued["id"], expires_at=ago(seconds=1))
    assert_invalid_grant(await exchange(anonymous, issued["code"]))
    assert await devices_of(engine, patient["id"]) == []
    assert (await code_row(engine, issued["id"])).failed_attempts == 0


async def test_a_code_is_exchanged_once_and_a_second_use_revokes_its_device(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    """A used code presented again with its secret was seen by someone else: whoever enrolled
    first, the device it enrolled is revoked (RFC 6749 §4.1.2 asks this of authorization
    codes), and the patient needs a new code."""
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    first = assert_token_answer(await exchange(anonymous, issued["code"]), patient["id"])
    assert_invalid_grant(await exchange(anonymous, issued["code"], "someone else's phone"))

    [device] = await devices_of(engine, patient["id"])
    assert device.name == "Ana's phone"
    assert device.revoked_at is not None
    app = make_client(first["access_token"])
    assert_problem(await app.get(f"{API}/patients/{patient['id']}"), 401)
    assert_invalid_grant(await refresh(anonymous, first["refresh_token"]))


async def test_five_wrong_guesses_burn_the_code(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    guess = wrong_guess(issued["code"])
    for attempt in range(1, 5):
        assert_invalid_grant(await exchange(anonymous, guess))
        row = await code_row(engine, issued["id"])
        assert (row.failed_attempts, row.burned_at) == (attempt, None)
    fifth = await exchange(anonymous, guess)
    assert_invalid_grant(fifth)
    row = await code_row(engine, issued["id"])
    assert row.failed_attempts == 5
    assert row.burned_at is not None
    # Burned: even the right code is refused now, with the same answer.
    assert_invalid_grant(await exchange(anonymous, issued["code"]))
    assert await devices_of(engine, patient["id"]) == []
    # Each guess is in the trail, naming the patient whose code it was at.
    audited = await audit_row(engine, fifth)
    assert (audited["outcome"], audited["status"], audited["role"]) == ("denied", 400, None)
    assert audited["patient_id"] == uuid.UUID(patient["id"])


async def test_fewer_wrong_guesses_leave_the_code_usable(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    for _ in range(4):
        assert_invalid_grant(await exchange(anonymous, wrong_guess(issued["code"])))
    assert_token_answer(await exchange(anonymous, issued["code"]), patient["id"])


async def test_a_guess_naming_no_code_counts_against_none(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    public = issued["code"][:4]
    unused = next(
        f"{a}{b}{c}{d}-{issued['code'][5:]}"
        for a in "0123" for b in "4567" for c in "89AB" for d in "CDEF"
        if f"{a}{b}{c}{d}" != public
    )  # fmt: skip
    response = await exchange(anonymous, unused)
    assert_invalid_grant(response)
    assert (await code_row(engine, issued["id"])).failed_attempts == 0
    assert (await audit_row(engine, response))["patient_id"] is None
    assert_token_answer(await exchange(anonymous, issued["code"]), patient["id"])


@pytest.mark.parametrize("state", ["used", "expired", "burned"])
async def test_guesses_at_a_dead_code_count_against_it_no_more(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine, state: str
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    if state == "used":
        assert_token_answer(await exchange(anonymous, issued["code"]), patient["id"])
    else:
        column = "expires_at" if state == "expired" else "burned_at"
        await set_code(engine, issued["id"], **{column: ago(seconds=1)})
    assert_invalid_grant(await exchange(anonymous, wrong_guess(issued["code"])))
    assert (await code_row(engine, issued["id"])).failed_attempts == 0
    # and a used code's device stays: a wrong guess proves nothing
    assert all(d.revoked_at is None for d in await devices_of(engine, patient["id"]))


@pytest.mark.parametrize("typed", ["", "K7QM", "not a code at all", "K7QM-3XPA-9D2U"])
async def test_what_cannot_be_a_code_is_invalid_grant(
    anonymous: httpx.AsyncClient, typed: str
) -> None:
    response = await token_request(
        anonymous, grant_type=ENROLMENT_GRANT, code=typed, device_name="phone"
    )
    if typed:
        assert_invalid_grant(response)
    else:
        assert_oauth_error(response, "invalid_request")  # `code` is required


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({}, id="no-device_name"),
        pytest.param({"device_name": ""}, id="empty"),
        pytest.param({"device_name": "   "}, id="blank"),
        pytest.param({"device_name": "x" * 101}, id="101-characters"),
        pytest.param({"device_name": "pho\x00ne"}, id="nul"),
    ],
)
async def test_a_bad_device_name_is_invalid_request_and_spends_nothing(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    engine: AsyncEngine,
    form: dict[str, str],
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    response = await token_request(
        anonymous, grant_type=ENROLMENT_GRANT, code=issued["code"], **form
    )
    assert_oauth_error(response, "invalid_request")
    row = await code_row(engine, issued["id"])
    assert (row.used_at, row.failed_attempts) == (None, 0)
    assert_token_answer(await exchange(anonymous, issued["code"], "x" * 100), patient["id"])


# --- racing -------------------------------------------------------------------------------------


async def test_two_apps_racing_with_one_code(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    """Exactly one exchange succeeds. The other presented a code that was used (if only a
    moment before), which is what a copied code looks like: the device is revoked, as for
    any second use, so the winner's tokens stop too and the patient asks for a new code."""
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    responses = await asyncio.gather(
        exchange(anonymous, issued["code"], "first"), exchange(anonymous, issued["code"], "second")
    )
    assert sorted(r.status_code for r in responses) == [200, 400]
    won = next(r for r in responses if r.status_code == 200)
    lost = next(r for r in responses if r.status_code == 400)
    assert_invalid_grant(lost)
    [device] = await devices_of(engine, patient["id"])
    assert device.revoked_at is not None
    app = make_client(won.json()["access_token"])
    assert_problem(await app.get(f"{API}/patients/{patient['id']}"), 401)


async def test_the_slow_hash_runs_with_no_transaction_open(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a code is being hashed, other requests write: on SQLite an open transaction
    would hold the write lock through the hash, and a flood of guesses would stall every
    write of the clinic."""
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    hashing, written = threading.Event(), threading.Event()
    verify = codes.verify_code

    def slow_verify(code: str, stored: str) -> bool:
        hashing.set()
        assert written.wait(timeout=5), "a write waited for the hash to end"
        return verify(code, stored)

    monkeypatch.setattr(codes, "verify_code", slow_verify)
    exchanging = asyncio.create_task(exchange(anonymous, issued["code"]))
    assert await asyncio.to_thread(hashing.wait, 5)
    await create_patient(client)  # a write, while the code is being hashed
    written.set()
    assert_token_answer(await exchanging, patient["id"])
