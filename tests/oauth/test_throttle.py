"""The token endpoint bounds each client address's guessing, whatever the grant: an address
refused `limit` times within a window is answered 429 `slow_down` with Retry-After until its
failures age out. The count is in the database, so every process enforces the same one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.core.config import Settings
from tests.enrolment.support import (
    assert_invalid_grant,
    assert_oauth_error,
    assert_token_answer,
    code_row,
    enrol,
    exchange,
    new_code,
    refresh,
)
from tests.factories import create_patient
from tests.support import client_of, running

LIMIT = 3
WINDOW = 60
GUESSER = ("203.0.113.7", 50000)  # a documentation address (RFC 5737)
NEIGHBOUR = ("203.0.113.8", 50000)
DEAD_REFRESH_TOKEN = "ort_" + "A" * 43


@pytest.fixture
async def throttled(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The service with a small limit (`engine`: the tables are emptied afterwards)."""
    async with running(
        settings, oauth_failure_limit=LIMIT, oauth_failure_window_seconds=WINDOW
    ) as app:
        yield app


async def fail(client: httpx.AsyncClient, times: int) -> None:
    for _ in range(times):
        assert_invalid_grant(await refresh(client, DEAD_REFRESH_TOKEN))


def assert_slow_down(response: httpx.Response, *, at_most: int) -> int:
    body = assert_oauth_error(response, "slow_down", 429)
    assert "retry in" in body["error_description"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= at_most
    return retry_after


async def test_an_address_that_keeps_failing_is_refused_for_a_while(
    throttled: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    issued = await new_code(client, patient["id"])
    async with client_of(throttled, client=GUESSER) as guesser:
        await fail(guesser, LIMIT)
        # Refused before its request is read: even the right code, which stays unspent.
        refused = await exchange(guesser, issued["code"])
        assert_slow_down(refused, at_most=2 * WINDOW)
        assert (await code_row(engine, issued["id"])).used_at is None
        # The refusal is audited, and does not count as one more failure.
        async with engine.connect() as conn:
            status = await conn.scalar(
                select(AuditEvent.status).where(
                    AuditEvent.request_id == refused.headers["x-request-id"]
                )
            )
        assert status == 429
    # Another address is not held back by this one.
    async with client_of(throttled, client=NEIGHBOUR) as neighbour:
        assert_token_answer(await exchange(neighbour, issued["code"]), patient["id"])


async def test_every_kind_of_refusal_counts(throttled: FastAPI, client: httpx.AsyncClient) -> None:
    """A malformed request, an unknown grant type, a wrong code: a guesser cannot switch
    grants to get more tries."""
    async with client_of(throttled, client=GUESSER) as guesser:
        assert_oauth_error(await guesser.post("/oauth/token", data={}), "invalid_request")
        assert_oauth_error(
            await guesser.post("/oauth/token", data={"grant_type": "password"}),
            "unsupported_grant_type",
        )
        assert_invalid_grant(await exchange(guesser, "AAAA-AAAA-AAAA"))
        assert_slow_down(await refresh(guesser, DEAD_REFRESH_TOKEN), at_most=2 * WINDOW)


async def test_successes_do_not_reset_the_count(
    throttled: FastAPI, client: httpx.AsyncClient
) -> None:
    """Else a guesser holding one valid refresh token could refresh between guesses."""
    patient = await create_patient(client)
    async with client_of(throttled, client=GUESSER) as guesser:
        app = await enrol(client, guesser, patient["id"])
        refresh_token = app.refresh_token
        for round_ in range(LIMIT):
            await fail(guesser, 1)
            if round_ < LIMIT - 1:
                answer = assert_token_answer(await refresh(guesser, refresh_token), patient["id"])
                refresh_token = answer["refresh_token"]
        assert_slow_down(await refresh(guesser, refresh_token), at_most=2 * WINDOW)


async def test_the_count_is_shared_by_every_process(settings: Settings, throttled: FastAPI) -> None:
    """Two app instances stand for two workers (or machines): the failures add up."""
    async with (
        running(settings, oauth_failure_limit=LIMIT, oauth_failure_window_seconds=WINDOW) as other,
        client_of(throttled, client=GUESSER) as on_a,
        client_of(other, client=GUESSER) as on_b,
    ):
        await fail(on_a, 2)
        await fail(on_b, 1)
        assert_slow_down(await refresh(on_a, DEAD_REFRESH_TOKEN), at_most=2 * WINDOW)
        assert_slow_down(await refresh(on_b, DEAD_REFRESH_TOKEN), at_most=2 * WINDOW)


async def test_failures_age_out(throttled: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """No span of one window holds more than `limit` counted failures: refused until the
    failures are out of the current and the previous window."""
    start = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)  # 10 s into a window
    clock = [start]
    monkeypatch.setattr("app.oauth.throttle.utcnow", lambda: clock[0])
    async with client_of(throttled, client=GUESSER) as guesser:
        await fail(guesser, LIMIT)
        # All in this window: they count until the next one ends.
        assert assert_slow_down(await refresh(guesser, DEAD_REFRESH_TOKEN), at_most=110) == 110
        clock[0] = start + timedelta(seconds=WINDOW)  # the next window: still counted
        assert assert_slow_down(await refresh(guesser, DEAD_REFRESH_TOKEN), at_most=50) == 50
        clock[0] = start + timedelta(seconds=2 * WINDOW - 10)  # two windows on: forgotten
        await fail(guesser, LIMIT)
        # These are in one window, the earlier ones aged out: refused again, as long.
        assert_slow_down(await refresh(guesser, DEAD_REFRESH_TOKEN), at_most=2 * WINDOW)


async def test_failures_split_over_two_windows_count_together(
    throttled: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2030, 1, 1, 12, 0, 50, tzinfo=UTC)  # 10 s before a window ends
    clock = [start]
    monkeypatch.setattr("app.oauth.throttle.utcnow", lambda: clock[0])
    async with client_of(throttled, client=GUESSER) as guesser:
        await fail(guesser, LIMIT - 1)
        clock[0] = start + timedelta(seconds=20)  # 10 s into the next window
        await fail(guesser, 1)
        # Only this window's one failure would be left once it ends: 50 s from now.
        assert assert_slow_down(await refresh(guesser, DEAD_REFRESH_TOKEN), at_most=50) == 50


async def test_a_limit_of_zero_turns_it_off(settings: Settings, engine: AsyncEngine) -> None:
    async with (
        running(settings, oauth_failure_limit=0) as app,
        client_of(app, client=GUESSER) as guesser,
    ):
        await fail(guesser, 30)
