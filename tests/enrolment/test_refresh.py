"""`grant_type=refresh_token`: each refresh token is used once and answered with a new pair
(rotation); one presented a second time has leaked, and the device is revoked with every token
it holds (OAuth 2.0 Security BCP, refresh token rotation)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.enrolment.support import (
    assert_invalid_grant,
    assert_token_answer,
    devices_of,
    enrol,
    expire_refresh_tokens,
    refresh,
    refresh_rows,
)
from tests.factories import API, create_patient
from tests.support import MakeClient, assert_problem


async def test_a_refresh_rotates_the_pair(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    [device] = await devices_of(engine, patient["id"])
    enrolled_seen = device.last_seen_at
    assert enrolled_seen is not None

    new = assert_token_answer(await refresh(anonymous, app.refresh_token), patient["id"])
    assert new["access_token"] != app.access_token
    assert new["refresh_token"] != app.refresh_token
    # The same device, the same scope, and the new access token works.
    response = await make_client(new["access_token"]).get(f"{API}/patients/{patient['id']}")
    assert response.status_code == 200
    [device] = await devices_of(engine, patient["id"])
    assert device.revoked_at is None
    assert device.last_seen_at is not None
    assert device.last_seen_at >= enrolled_seen
    # The presented refresh token is spent; the new one lives.
    first, second = await refresh_rows(engine, device.id)
    assert first.used_at is not None
    assert second.used_at is None
    assert isinstance(second.expires_at, datetime)

    # And so on: each new refresh token gives the next pair.
    newer = assert_token_answer(await refresh(anonymous, new["refresh_token"]), patient["id"])
    assert len(await refresh_rows(engine, device.id)) == 3
    assert newer["refresh_token"] not in (app.refresh_token, new["refresh_token"])


async def test_a_refresh_token_used_twice_revokes_the_whole_chain(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    """The old token comes back (a copy an attacker kept, or the app's own after the attacker
    refreshed first): the server cannot tell who is who, so the device loses everything."""
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    current = assert_token_answer(await refresh(anonymous, app.refresh_token), patient["id"])
    current_app = make_client(current["access_token"])
    assert (await current_app.get(f"{API}/patients/{patient['id']}")).status_code == 200  # cached

    assert_invalid_grant(await refresh(anonymous, app.refresh_token))

    # The current access token stops at once, and so does the current refresh token.
    assert_problem(await current_app.get(f"{API}/patients/{patient['id']}"), 401)
    assert_problem(await make_client(app.access_token).get(f"{API}/instruments"), 401)
    assert_invalid_grant(await refresh(anonymous, current["refresh_token"]))
    [device] = await devices_of(engine, patient["id"])
    assert device.revoked_at is not None
    assert all(row.revoked_at is not None for row in await refresh_rows(engine, device.id))
    # The staff see it revoked.
    listing = await client.get(f"{API}/patients/{patient['id']}/devices")
    assert listing.json()["items"][0]["revoked_at"] is not None


async def test_an_expired_refresh_token_is_refused_and_revokes_nothing(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    [device] = await devices_of(engine, patient["id"])
    await expire_refresh_tokens(engine, device.id)
    assert_invalid_grant(await refresh(anonymous, app.refresh_token))
    assert_invalid_grant(await refresh(anonymous, app.refresh_token))  # still only expired
    [device] = await devices_of(engine, patient["id"])
    assert device.revoked_at is None
    # its access token lives out its own (short) life
    response = await make_client(app.access_token).get(f"{API}/patients/{patient['id']}")
    assert response.status_code == 200


async def test_a_revoked_devices_refresh_token_is_refused(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    [device] = await devices_of(engine, patient["id"])
    url = f"{API}/patients/{patient['id']}/devices/{device.id}"
    assert (await client.delete(url)).status_code == 204
    assert_invalid_grant(await refresh(anonymous, app.refresh_token))


async def test_an_unknown_refresh_token_is_refused(anonymous: httpx.AsyncClient) -> None:
    assert_invalid_grant(await refresh(anonymous, "ort_" + "A" * 43))
    assert_invalid_grant(await refresh(anonymous, "otk_not-a-refresh-token"))


async def test_an_access_token_is_not_a_refresh_token(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    assert_invalid_grant(await refresh(anonymous, app.access_token))
    [device] = await devices_of(engine, patient["id"])
    assert device.revoked_at is None


async def test_two_refreshes_racing_with_one_token(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    """Exactly one gets a new pair; the other finds the token used, which is reuse: the device
    is revoked, the winner's new tokens with it. An app refreshes one request at a time."""
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    responses = await asyncio.gather(
        refresh(anonymous, app.refresh_token), refresh(anonymous, app.refresh_token)
    )
    assert sorted(r.status_code for r in responses) == [200, 400]
    won = next(r for r in responses if r.status_code == 200).json()
    assert_invalid_grant(next(r for r in responses if r.status_code == 400))
    [device] = await devices_of(engine, patient["id"])
    assert device.revoked_at is not None
    assert_problem(await make_client(won["access_token"]).get(f"{API}/instruments"), 401)
    assert_invalid_grant(await refresh(anonymous, won["refresh_token"]))
