"""Dead credentials are purged once they have been dead longer than the retention
(OUTCOMES_CREDENTIAL_RETENTION_HOURS, a week by default), and only then; what may still serve
(a used code or refresh token until it expires, a token an Idempotency-Key or an export job
names) stays; the audit trail is never touched. The service purges while it runs; `outcomes
tokens purge` does it at once (tests/test_cli.py). On both databases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.auth.models import ApiToken, IdempotencyKey
from app.core.config import Settings
from app.core.db import create_sessionmaker, table_of
from app.credentials import purge
from app.credentials.purge import Purged, purge_dead_credentials
from app.enrolment.models import Device, EnrolmentCode, RefreshToken
from app.fhir.models import ExportJob
from app.oauth.models import ClientAssertion, OAuthClient, TokenEndpointFailure
from tests.factories import create_patient
from tests.support import running

TOKENS, CODES, DEVICES = table_of(ApiToken), table_of(EnrolmentCode), table_of(Device)
REFRESH, ASSERTIONS = table_of(RefreshToken), table_of(ClientAssertion)
FAILURES, CLIENTS = table_of(TokenEndpointFailure), table_of(OAuthClient)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def long_ago(now: datetime, settings: Settings) -> datetime:
    """Dead a little longer than the retention."""
    return now - timedelta(hours=settings.credential_retention_hours + 1)


@pytest.fixture
def lately(now: datetime, settings: Settings) -> datetime:
    """Dead, but not as long as the retention."""
    return now - timedelta(hours=settings.credential_retention_hours - 1)


async def add(engine: AsyncEngine, table: Table, rows: dict[str, dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        for row in rows.values():
            await conn.execute(insert(table).values(**row))


async def left(engine: AsyncEngine, table: Table, rows: dict[str, dict[str, Any]]) -> set[str]:
    """The names of ``rows`` still in ``table``."""
    async with engine.connect() as conn:
        ids = set((await conn.execute(select(table.c.id))).scalars())
    return {name for name, row in rows.items() if row["id"] in ids}


async def purge_now(engine: AsyncEngine, settings: Settings) -> Purged:
    return await purge_dead_credentials(create_sessionmaker(engine), settings)


def token(now: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "token_hash": uuid.uuid4().hex * 2,
        "role": "integration",
        "created_at": now - timedelta(days=400),
    } | fields


async def test_access_tokens_dead_longer_than_the_retention_go_and_the_rest_stay(
    engine: AsyncEngine, settings: Settings, now: datetime, long_ago: datetime, lately: datetime
) -> None:
    tokens = {
        "expired long ago": token(now, expires_at=long_ago),
        "revoked long ago": token(now, revoked_at=long_ago),
        "revoked long ago, expired lately": token(now, revoked_at=long_ago, expires_at=lately),
        "expired lately": token(now, expires_at=lately),
        "revoked lately": token(now, revoked_at=lately),
        "alive": token(now, expires_at=now + timedelta(minutes=5)),
        "never expires": token(now),
        "expired long ago, its Idempotency-Key kept": token(now, expires_at=long_ago),
        "expired long ago, its export job kept": token(now, expires_at=long_ago),
    }
    await add(engine, TOKENS, tokens)
    keyed = tokens["expired long ago, its Idempotency-Key kept"]["id"]
    exporting = tokens["expired long ago, its export job kept"]["id"]
    async with engine.begin() as conn:
        await conn.execute(
            insert(table_of(IdempotencyKey)).values(
                token_id=keyed, key="k", request_hash="0" * 64, state="completed",
                created_at=now, expires_at=now + timedelta(hours=24),
            )
        )  # fmt: skip
        await conn.execute(
            insert(table_of(ExportJob)).values(
                id=uuid.uuid4(), token_id=exporting, kind="system", types="Patient",
                transaction_time=now, request_url="http://test/fhir/R4/$export", created_at=now,
            )
        )  # fmt: skip

    purged = await purge_now(engine, settings)

    assert purged.access_tokens == 3
    assert await left(engine, TOKENS, tokens) == {
        "expired lately",
        "revoked lately",
        "alive",
        "never expires",
        "expired long ago, its Idempotency-Key kept",
        "expired long ago, its export job kept",
    }
    # once its Idempotency-Key has gone (on its own retention), the token goes too
    async with engine.begin() as conn:
        await conn.execute(delete(table_of(IdempotencyKey)))
    assert (await purge_now(engine, settings)).access_tokens == 1
    assert "expired long ago, its Idempotency-Key kept" not in await left(engine, TOKENS, tokens)


async def test_enrolment_codes_go_once_expired_or_burned_for_the_retention(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    settings: Settings,
    now: datetime,
    long_ago: datetime,
    lately: datetime,
) -> None:
    patient_id = uuid.UUID((await create_patient(client))["id"])

    def code(**fields: Any) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "patient_id": patient_id,
            "lookup": uuid.uuid4().hex[:8],
            "code_hash": "hash",
            "created_at": now - timedelta(days=400),
            "expires_at": now + timedelta(hours=24),
            "failed_attempts": 0,
        } | fields

    codes = {
        "expired long ago, never used": code(expires_at=long_ago),
        "used, expired long ago": code(used_at=long_ago, expires_at=long_ago),
        "burned long ago, not expired": code(burned_at=long_ago),
        "expired lately": code(expires_at=lately),
        "burned lately": code(burned_at=lately),
        # presented again, it still revokes the device it enrolled: kept until it expires
        "used long ago, not expired": code(used_at=long_ago),
        "alive": code(),
    }
    await add(engine, CODES, codes)
    device = {
        "id": uuid.uuid4(),
        "patient_id": patient_id,
        "name": "Ana's phone",
        "enrolment_id": codes["used, expired long ago"]["id"],
        "created_at": long_ago,
    }
    await add(engine, DEVICES, {"device": device})

    purged = await purge_now(engine, settings)

    assert purged.enrolment_codes == 3
    assert await left(engine, CODES, codes) == {
        "expired lately",
        "burned lately",
        "used long ago, not expired",
        "alive",
    }
    # the device stays, no longer naming the code that enrolled it
    async with engine.connect() as conn:
        enrolled_with = await conn.scalar(
            select(DEVICES.c.enrolment_id).where(DEVICES.c.id == device["id"])
        )
    assert enrolled_with is None


async def test_refresh_tokens_go_once_expired_or_revoked_for_the_retention(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    settings: Settings,
    now: datetime,
    long_ago: datetime,
    lately: datetime,
) -> None:
    patient_id = uuid.UUID((await create_patient(client))["id"])
    device = {"id": uuid.uuid4(), "patient_id": patient_id, "name": "phone", "created_at": now}
    await add(engine, DEVICES, {"device": device})

    def refresh(**fields: Any) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "device_id": device["id"],
            "token_hash": uuid.uuid4().hex * 2,
            "created_at": now - timedelta(days=400),
            "expires_at": now + timedelta(days=90),
        } | fields

    tokens = {
        "expired long ago": refresh(expires_at=long_ago),
        "used, expired long ago": refresh(used_at=long_ago, expires_at=long_ago),
        "revoked long ago": refresh(revoked_at=long_ago),
        "expired lately": refresh(expires_at=lately),
        "revoked lately": refresh(revoked_at=lately),
        # presented again, it revokes the device (it leaked): kept until it expires
        "used long ago, not expired": refresh(used_at=long_ago),
        "alive": refresh(),
    }
    await add(engine, REFRESH, tokens)

    purged = await purge_now(engine, settings)

    assert purged.refresh_tokens == 3
    assert await left(engine, REFRESH, tokens) == {
        "expired lately",
        "revoked lately",
        "used long ago, not expired",
        "alive",
    }


async def test_spent_assertion_ids_and_old_failure_counts_go_once_out_of_their_window(
    engine: AsyncEngine, settings: Settings, now: datetime
) -> None:
    client_id = uuid.uuid4()
    await add(
        engine,
        CLIENTS,
        {
            "client": {
                "id": client_id, "name": "EHR", "role": "integration", "scope": "system/*.rs",
                "jwks": {"keys": []}, "created_at": now,
            }
        },
    )  # fmt: skip
    # a jti is kept until its assertion has expired and the clock skew (60 s) has passed
    async with engine.begin() as conn:
        for jti, expired_s_ago in (("spent", 61), ("within the skew", 59), ("alive", -200)):
            expires_at = now - timedelta(seconds=expired_s_ago)
            await conn.execute(
                insert(ASSERTIONS).values(client_id=client_id, jti=jti, expires_at=expires_at)
            )
        # failures count in the current and the previous window only
        window = timedelta(seconds=settings.oauth_failure_window_seconds)
        epoch = int(now.timestamp())
        current = datetime.fromtimestamp(epoch - epoch % int(window.total_seconds()), UTC)
        for caller, start in (("old", current - 2 * window), ("recent", current - window)):
            await conn.execute(
                insert(FAILURES).values(caller=caller, window_start=start, failures=3)
            )

    purged = await purge_dead_credentials(create_sessionmaker(engine), settings, now)

    assert (purged.assertion_ids, purged.failure_counts) == (1, 1)
    async with engine.connect() as conn:
        jtis = set((await conn.execute(select(ASSERTIONS.c.jti))).scalars())
        callers = set((await conn.execute(select(FAILURES.c.caller))).scalars())
    assert (jtis, callers) == ({"within the skew", "alive"}, {"recent"})


async def test_the_audit_trail_is_kept_whole(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, long_ago: datetime
) -> None:
    dead = token(long_ago, expires_at=long_ago)
    await add(engine, TOKENS, {"dead": dead})
    # an audit row of the dead token's
    async with engine.begin() as conn:
        await conn.execute(
            insert(table_of(AuditEvent)).values(
                id=uuid.uuid4(), at=long_ago, token_id=dead["id"], role="integration",
                action="read", resource_type="patient", outcome="allowed", status=200,
                request_id=uuid.uuid4().hex,
            )
        )  # fmt: skip
    await client.get("/api/v1/patients")  # and one of now
    async with engine.connect() as conn:
        before = await conn.scalar(select(func.count()).select_from(AuditEvent))

    assert (await purge_now(engine, settings)).access_tokens == 1

    async with engine.connect() as conn:
        after = await conn.scalar(select(func.count()).select_from(AuditEvent))
        named = await conn.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.token_id == dead["id"])
        )
    assert (after, named) == (before, 1)


async def test_a_purge_after_a_long_time_goes_in_batches(
    engine: AsyncEngine,
    settings: Settings,
    now: datetime,
    long_ago: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(purge, "BATCH", 3)
    tokens = {f"dead {n}": token(now, expires_at=long_ago) for n in range(7)}
    await add(engine, TOKENS, tokens)
    assert (await purge_now(engine, settings)).access_tokens == 7
    assert await left(engine, TOKENS, tokens) == set()


async def test_processes_purging_at_once_delete_each_row_once(
    engine: AsyncEngine,
    settings: Settings,
    now: datetime,
    long_ago: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every worker purges: at the same moment they share the rows out (PostgreSQL: each skips
    those another has locked), with no deadlock and no failure."""
    monkeypatch.setattr(purge, "BATCH", 3)
    tokens = {f"dead {n}": token(now, expires_at=long_ago) for n in range(20)}
    await add(engine, TOKENS, tokens)
    results = await asyncio.gather(*(purge_now(engine, settings) for _ in range(3)))
    await purge_now(engine, settings)  # what a worker skipped goes at its next round
    assert sum(result.access_tokens for result in results) <= 20
    assert await left(engine, TOKENS, tokens) == set()


async def test_the_service_purges_while_it_runs(
    engine: AsyncEngine, settings: Settings, now: datetime, long_ago: datetime
) -> None:
    tokens = {"dead": token(now, expires_at=long_ago), "alive": token(now)}
    await add(engine, TOKENS, tokens)

    async def purged_to(names: set[str]) -> None:
        for _ in range(100):
            if await left(engine, TOKENS, tokens) == names:
                return
            await asyncio.sleep(0.05)
        assert await left(engine, TOKENS, tokens) == names

    async with running(settings, credential_purge_seconds=0.05):
        await purged_to({"alive"})
        # and again later, for what has died since
        tokens["later"] = token(now, revoked_at=long_ago)
        await add(engine, TOKENS, {"later": tokens["later"]})
        await purged_to({"alive"})
