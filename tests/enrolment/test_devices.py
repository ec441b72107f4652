"""A patient's enrolled devices: staff list them and revoke one, which stops its tokens at once,
in every process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.models import ApiToken
from app.auth.state import auth_state
from app.auth.tokens import token_hash
from app.core.config import Settings
from tests.enrolment.support import (
    assert_invalid_grant,
    assert_token_answer,
    devices_of,
    enrol,
    refresh,
)
from tests.factories import API, create_patient
from tests.support import Issue, MakeClient, assert_problem, client_of, running


def devices_url(patient_id: str, device_id: object | None = None) -> str:
    url = f"{API}/patients/{patient_id}/devices"
    return url if device_id is None else f"{url}/{device_id}"


async def test_staff_list_a_patients_devices_without_their_tokens(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    phone = await enrol(client, anonymous, patient["id"], "phone")
    tablet = await enrol(client, anonymous, patient["id"], "tablet")
    for staff in (client, admin):
        response = await staff.get(devices_url(patient["id"]))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [item["name"] for item in items] == ["phone", "tablet"]  # oldest first
        assert all(
            set(item) == {"id", "name", "created_at", "last_seen_at", "revoked_at"}
            for item in items
        )
        for secret in (phone.access_token, phone.refresh_token, tablet.refresh_token):
            assert secret not in response.text


async def test_a_patient_without_devices_has_an_empty_list(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    response = await client.get(devices_url(patient["id"]))
    assert response.json() == {"items": []}
    assert_problem(await client.get(devices_url(str(uuid.uuid4()))), 404)


async def test_the_patients_own_app_sees_its_devices_and_no_one_elses(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, make_client: MakeClient
) -> None:
    """A patient's devices are that patient's data: the app may show them (to spot one that
    is not the patient's) but may not revoke them (see test_only_staff_revoke_devices)."""
    patient = await create_patient(client)
    other = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"], "phone")
    await enrol(client, anonymous, other["id"], "other's phone")
    own_app = make_client(app.access_token)
    response = await own_app.get(devices_url(patient["id"]))
    assert [item["name"] for item in response.json()["items"]] == ["phone"]
    refused = await own_app.get(devices_url(other["id"]))
    assert_problem(refused, 404)
    assert "other's phone" not in refused.text


async def test_revoking_a_device_stops_its_tokens_at_once(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    patient = await create_patient(client)
    phone = await enrol(client, anonymous, patient["id"], "phone")
    tablet = await enrol(client, anonymous, patient["id"], "tablet")
    phone_app = make_client(phone.access_token)
    assert (await phone_app.get(f"{API}/patients/{patient['id']}")).status_code == 200  # cached
    phone_id = (await devices_of(engine, patient["id"]))[0].id

    response = await client.delete(devices_url(patient["id"], phone_id))
    assert response.status_code == 204
    assert response.content == b""

    assert_problem(await phone_app.get(f"{API}/patients/{patient['id']}"), 401)
    assert_invalid_grant(await refresh(anonymous, phone.refresh_token))
    # The patient's other device is untouched.
    tablet_app = make_client(tablet.access_token)
    assert (await tablet_app.get(f"{API}/patients/{patient['id']}")).status_code == 200
    assert_token_answer(await refresh(anonymous, tablet.refresh_token), patient["id"])

    # Revoking again changes nothing and still answers 204; the first time is kept.
    [revoked, _] = await devices_of(engine, patient["id"])
    assert revoked.revoked_at is not None
    assert (await client.delete(devices_url(patient["id"], phone_id))).status_code == 204
    [again, _] = await devices_of(engine, patient["id"])
    assert again.revoked_at == revoked.revoked_at


async def test_revoking_a_device_leaves_its_expired_tokens_as_they_are(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """An app refreshing every 15 minutes leaves thousands of expired access tokens: they need
    no revocation, nor a notification to every process each."""
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    current = assert_token_answer(await refresh(anonymous, app.refresh_token), patient["id"])
    async with engine.begin() as conn:
        await conn.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == token_hash(app.access_token))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    [device] = await devices_of(engine, patient["id"])
    assert (await client.delete(devices_url(patient["id"], device.id))).status_code == 204
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ApiToken.token_hash, ApiToken.revoked_at))).all()
    revoked = {digest: revoked_at for digest, revoked_at in rows}
    assert revoked[token_hash(app.access_token)] is None
    assert revoked[token_hash(current["access_token"])] is not None


async def test_another_patients_device_is_not_found(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    patient = await create_patient(client)
    other = await create_patient(client)
    app = await enrol(client, anonymous, other["id"])
    [device] = await devices_of(engine, other["id"])
    assert_problem(await client.delete(devices_url(patient["id"], device.id)), 404)
    assert_problem(await client.delete(devices_url(patient["id"], uuid.uuid4())), 404)
    response = await client.delete(devices_url(patient["id"], "not-a-uuid"))
    assert_problem(response, 422, loc=["path", "device_id"])
    # Nothing was revoked.
    assert (await devices_of(engine, other["id"]))[0].revoked_at is None
    assert (await make_client(app.access_token).get(f"{API}/instruments")).status_code == 200


async def test_only_staff_revoke_devices(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    issue_token: Issue,
    engine: AsyncEngine,
) -> None:
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    [device] = await devices_of(engine, patient["id"])
    callers = [make_client(app.access_token)] + [
        make_client(await issue_token(role)) for role in ("integration", "dashboard")
    ]
    for caller in callers:
        assert_problem(await caller.delete(devices_url(patient["id"], device.id)), 403)
    assert (await devices_of(engine, patient["id"]))[0].revoked_at is None


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.postgres_only
async def test_a_revoked_device_is_refused_by_every_process(
    settings: Settings, issue_token: Issue, engine: AsyncEngine
) -> None:
    """Two processes that would trust their cached copy of the app's token for an hour: only
    the revocation's notification can make the other one refuse it."""
    hour = {"token_cache_seconds": 3600, "token_cache_pushed_seconds": 3600}
    staff_token = await issue_token("clinician")
    async with running(settings, **hour) as app_a, running(settings, **hour) as app_b:
        assert await _eventually(lambda: _listening(app_a))
        assert await _eventually(lambda: _listening(app_b))
        async with (
            client_of(app_a, staff_token) as staff_a,
            client_of(app_a) as anonymous_a,
        ):
            patient = await create_patient(staff_a)
            app = await enrol(staff_a, anonymous_a, patient["id"])
            [device] = await devices_of(engine, patient["id"])
            async with client_of(app_b, app.access_token) as app_on_b:
                assert (await app_on_b.get(f"{API}/instruments")).status_code == 200  # B caches
                assert len(auth_state(app_b).token_cache) > 0
                deleted = await staff_a.delete(devices_url(patient["id"], device.id))
                assert deleted.status_code == 204

                async def refused() -> bool:
                    return (await app_on_b.get(f"{API}/instruments")).status_code == 401

                assert await _eventually(refused)


async def _listening(application: FastAPI) -> bool:
    return auth_state(application).token_cache.listening
