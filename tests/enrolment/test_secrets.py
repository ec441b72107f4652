"""Codes, refresh tokens and access tokens are shown once, to the one who asked: only their
hashes are stored, and no log line ever holds one."""

from __future__ import annotations

import hashlib
import logging

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import app.models  # noqa: F401  (every table in Base.metadata)
from app.core.db import Base
from tests.enrolment.support import exchange, new_code, refresh
from tests.factories import API, ago, create_patient
from tests.support import MakeClient


async def every_stored_value(engine: AsyncEngine) -> list[str]:
    values: list[str] = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                values += [repr(value) for value in row]
    return values


async def test_no_secret_is_stored_or_logged(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        patient = await create_patient(client)
        issued = await new_code(client, patient["id"])
        first = (await exchange(anonymous, issued["code"])).json()
        app = make_client(first["access_token"])
        score = {"instrument": "pain-nrs", "value": 4, "recorded_at": ago(hours=1)}
        assert (
            await app.post(f"{API}/patients/{patient['id']}/observations", json=score)
        ).status_code == 201
        second = (await refresh(anonymous, first["refresh_token"])).json()
        # refusals too: a wrong code, a reused code, a reused refresh token
        await exchange(anonymous, issued["code"][:-1] + "0")
        await exchange(anonymous, issued["code"])
        await refresh(anonymous, first["refresh_token"])

    code_secret = issued["code"].replace("-", "")[4:]
    secrets = {
        "the code": code_secret,
        "the grouped code": issued["code"],
        "an access token": first["access_token"].removeprefix("otk_"),
        "the next access token": second["access_token"].removeprefix("otk_"),
        "a refresh token": first["refresh_token"].removeprefix("ort_"),
        "the next refresh token": second["refresh_token"].removeprefix("ort_"),
    }
    stored = await every_stored_value(engine)
    logged = [record.getMessage() for record in caplog.records]
    assert logged, "nothing was logged at all: the check would prove nothing"
    for what, secret in secrets.items():
        assert not [value for value in stored if secret in value], f"{what} is stored"
        assert not [line for line in logged if secret in line], f"{what} is logged"
    # What is stored instead: SHA-256 digests of the tokens.
    for token in (first["access_token"], first["refresh_token"], second["refresh_token"]):
        assert repr(hashlib.sha256(token.encode()).hexdigest()) in stored
    trail = await admin.get(f"{API}/audit", params={"limit": 500})
    assert not [secret for secret in secrets.values() if secret in trail.text]
