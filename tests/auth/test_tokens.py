"""Bearer tokens: issuing through the admin API, what is stored, validation, revocation (at once
in this process, within the cache TTL in another), expiry and malformed credentials.

The role x route matrix and patient scoping are in tests/auth/test_access_matrix.py, the audit
trail in tests/audit/test_audit.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

import app.models  # noqa: F401  (every table in Base.metadata)
from app.auth.cache import TokenCache
from app.auth.models import ApiToken
from app.auth.principal import Principal
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.config import Settings
from app.core.db import Base
from app.main import create_app
from tests.factories import API, ago, create_patient
from tests.support import Issue, MakeClient, assert_problem

TOKENS = f"{API}/tokens"
TOKEN_SHAPE = re.compile(r"^otk_[A-Za-z0-9_-]+$")


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_time(raw: str) -> datetime:
    return datetime.fromisoformat(raw)


async def issue(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post(TOKENS, json=body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def token_row(engine: AsyncEngine, token_id: str) -> tuple[Any, ...]:
    """(token_hash, role, patient_id, expires_at, revoked_at) of one stored token."""
    stmt = select(
        ApiToken.token_hash,
        ApiToken.role,
        ApiToken.patient_id,
        ApiToken.expires_at,
        ApiToken.revoked_at,
    ).where(ApiToken.id == uuid.UUID(token_id))
    async with engine.connect() as conn:
        return tuple((await conn.execute(stmt)).one())


async def revoked_at(engine: AsyncEngine, token_id: str) -> datetime | None:
    async with engine.connect() as conn:
        stmt = select(ApiToken.revoked_at).where(ApiToken.id == uuid.UUID(token_id))
        value: datetime | None = await conn.scalar(stmt)
    return value


async def token_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(ApiToken)) or 0)


async def every_stored_value(engine: AsyncEngine) -> list[str]:
    """Every value of every row of every table, as text (bytes included)."""
    values: list[str] = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                values += [repr(value) for value in row]
    return values


def assert_unauthenticated(response: httpx.Response) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    return body


# --- issuing -----------------------------------------------------------------------------


async def test_admin_issues_a_token_that_works_at_once(
    admin: httpx.AsyncClient, make_client: MakeClient, engine: AsyncEngine
) -> None:
    response = await admin.post(TOKENS, json={"role": "clinician"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "token", "role", "patient_id", "expires_at"}
    assert body["role"] == "clinician"
    assert body["patient_id"] is None
    assert body["expires_at"] is None  # no expiry unless asked
    assert response.headers["cache-control"] == "no-store"

    clinician = make_client(body["token"])
    assert (await clinician.get(f"{API}/patients")).status_code == 200
    assert (await create_patient(clinician))["id"]

    stored = await token_row(engine, body["id"])
    assert stored == (sha256(body["token"]), "clinician", None, None, None)


async def test_only_the_hash_is_stored_and_the_secret_is_logged_nowhere(
    admin: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        issued = await issue(admin, role="clinician")
        token = issued["token"]
        secret = token.removeprefix("otk_")
        # used once, so its audit rows and cache entry exist too
        assert (await make_client(token).get(f"{API}/patients")).status_code == 200
    stored = await every_stored_value(engine)
    assert repr(sha256(token)) in stored
    assert not [value for value in stored if secret in value]
    assert not [r.getMessage() for r in caplog.records if secret in r.getMessage()]
    audit = await admin.get(f"{API}/audit", params={"limit": 500})
    assert audit.status_code == 200
    assert secret not in audit.text


async def test_an_idempotency_key_does_not_store_the_token(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Replaying a POST means keeping its response; a token response must not be kept in
    plain text (only a hash is stored), whatever Idempotency-Key does for other routes."""
    response = await admin.post(
        TOKENS, json={"role": "dashboard"}, headers={"Idempotency-Key": "tokens-idem-1"}
    )
    assert response.status_code == 201, response.text
    secret = response.json()["token"].removeprefix("otk_")
    assert not [value for value in await every_stored_value(engine) if secret in value]


async def test_tokens_are_random_and_carry_at_least_128_bits(admin: httpx.AsyncClient) -> None:
    tokens = [(await issue(admin, role="dashboard"))["token"] for _ in range(20)]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert TOKEN_SHAPE.match(token), token
        secret = token.removeprefix("otk_")
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert len(raw) * 8 >= 128, token
    # No shared stem after the prefix: the secret part is not a counter or a timestamp.
    secrets = [t.removeprefix("otk_") for t in tokens]
    assert len({s[:4] for s in secrets}) > 10


async def test_expiry_is_set_from_expires_in_days(admin: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    issued = await issue(admin, role="integration", expires_in_days=30)
    expires_at = parse_time(issued["expires_at"])
    assert expires_at.utcoffset() == timedelta(0)
    assert before + timedelta(days=30) <= expires_at <= datetime.now(UTC) + timedelta(days=30)
    # the upper bound is accepted
    assert (await issue(admin, role="integration", expires_in_days=3650))["expires_at"]


async def test_a_patient_token_reads_and_records_its_own_patient_only(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, make_client: MakeClient
) -> None:
    own = await create_patient(client)
    other = await create_patient(client)
    issued = await issue(admin, role="patient", patient_id=own["id"])
    assert (issued["role"], issued["patient_id"]) == ("patient", own["id"])
    patient = make_client(issued["token"])
    assert (await patient.get(f"{API}/patients/{own['id']}")).status_code == 200
    body = {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=1)}
    response = await patient.post(f"{API}/patients/{own['id']}/observations", json=body)
    assert response.status_code == 201, response.text
    assert_problem(await patient.get(f"{API}/patients/{other['id']}"), 404)
    response = await patient.post(f"{API}/patients/{other['id']}/observations", json=body)
    assert_problem(response, 404)


# --- validation ----------------------------------------------------------------------------

EXISTING = "<an existing patient>"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"role": "patient"}, ["body"], id="patient-without-patient_id"),
        pytest.param({"role": "clinician", "patient_id": EXISTING}, ["body"], id="clinician-bound"),
        pytest.param({"role": "admin", "patient_id": EXISTING}, ["body"], id="admin-bound"),
        pytest.param(
            {"role": "integration", "patient_id": EXISTING}, ["body"], id="integration-bound"
        ),
        pytest.param({"role": "dashboard", "patient_id": EXISTING}, ["body"], id="dashboard-bound"),
        pytest.param(
            {"role": "patient", "patient_id": str(uuid.uuid4())},
            ["body", "patient_id"],
            id="unknown-patient",
        ),
        pytest.param(
            {"role": "patient", "patient_id": "not-a-uuid"},
            ["body", "patient_id"],
            id="malformed-patient_id",
        ),
        pytest.param({"role": "dashboard", "expires_in_days": 0}, ["body", "expires_in_days"]),
        pytest.param({"role": "dashboard", "expires_in_days": -1}, ["body", "expires_in_days"]),
        pytest.param({"role": "dashboard", "expires_in_days": 3651}, ["body", "expires_in_days"]),
        pytest.param(
            {"role": "dashboard", "expires_in_days": 3650.01}, ["body", "expires_in_days"]
        ),
        pytest.param({"role": "dashboard", "expires_in_days": "soon"}, ["body", "expires_in_days"]),
        pytest.param({"role": "superuser"}, ["body", "role"], id="unknown-role"),
        pytest.param({}, ["body", "role"], id="no-role"),
        pytest.param({"role": "dashboard", "token": "otk_chosen"}, ["body", "token"]),
        pytest.param({"role": "dashboard", "id": str(uuid.uuid4())}, ["body", "id"]),
        pytest.param({"role": "dashboard", "revoked_at": None}, ["body", "revoked_at"]),
    ],
)
async def test_invalid_requests_are_422_and_issue_nothing(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    body: dict[str, Any],
    loc: list[str],
) -> None:
    if body.get("patient_id") == EXISTING:
        body = body | {"patient_id": (await create_patient(client))["id"]}
    before = await token_count(engine)
    problem = assert_problem(await admin.post(TOKENS, json=body), 422, loc=loc)
    assert "otk_" not in str(problem)
    assert await token_count(engine) == before


async def test_binding_errors_say_what_is_wrong(admin: httpx.AsyncClient) -> None:
    unbound = assert_problem(await admin.post(TOKENS, json={"role": "patient"}), 422)
    assert unbound["errors"] == [{"loc": ["body"], "msg": "a patient token needs patient_id"}]
    bound = assert_problem(
        await admin.post(TOKENS, json={"role": "dashboard", "patient_id": str(uuid.uuid4())}), 422
    )
    assert bound["errors"] == [
        {"loc": ["body"], "msg": "only a patient token is bound to a patient_id"}
    ]
    unknown = assert_problem(
        await admin.post(TOKENS, json={"role": "patient", "patient_id": str(uuid.uuid4())}), 422
    )
    assert unknown["errors"] == [{"loc": ["body", "patient_id"], "msg": "no patient with this id"}]


@pytest.mark.parametrize("role", ["clinician", "patient", "integration", "dashboard"])
async def test_only_admins_issue_and_revoke_tokens(
    role: str,
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    make_client: MakeClient,
    issue_token: Issue,
    engine: AsyncEngine,
) -> None:
    patient_id = (await create_patient(client))["id"] if role == "patient" else None
    caller = make_client(await issue_token(role, patient_id))
    target = await issue(admin, role="dashboard")
    before = await token_count(engine)
    assert_problem(await caller.post(TOKENS, json={"role": "admin"}), 403)
    assert_problem(await caller.delete(f"{TOKENS}/{target['id']}"), 403)
    assert await token_count(engine) == before
    assert await revoked_at(engine, target["id"]) is None
    assert (await make_client(target["token"]).get(f"{API}/cohort/summary")).status_code == 200


# --- revocation ----------------------------------------------------------------------------


async def test_revocation_takes_effect_on_the_very_next_request(
    admin: httpx.AsyncClient, make_client: MakeClient, engine: AsyncEngine
) -> None:
    issued = await issue(admin, role="clinician")
    victim = make_client(issued["token"])
    # Resolved once, so this process's token cache holds it.
    assert (await victim.get(f"{API}/patients")).status_code == 200

    response = await admin.delete(f"{TOKENS}/{issued['id']}")
    assert response.status_code == 204
    assert response.content == b""

    assert_unauthenticated(await victim.get(f"{API}/patients"))
    assert_unauthenticated(await victim.get(f"{API}/instruments"))
    first = await revoked_at(engine, issued["id"])
    assert first is not None

    # Revoking again changes nothing and still answers 204; the first time is kept.
    again = await admin.delete(f"{TOKENS}/{issued['id']}")
    assert again.status_code == 204
    assert again.content == b""
    assert await revoked_at(engine, issued["id"]) == first
    assert (await admin.get(f"{API}/patients")).status_code == 200  # the admin is unaffected


async def test_an_admin_may_revoke_its_own_token(
    make_client: MakeClient, issue_token: Issue
) -> None:
    admin = make_client(await issue_token("admin"))
    issued = await issue(admin, role="admin")
    own = make_client(issued["token"])
    assert (await own.delete(f"{TOKENS}/{issued['id']}")).status_code == 204
    assert_unauthenticated(await own.get(f"{API}/patients"))


async def test_revoking_an_unknown_or_malformed_id(admin: httpx.AsyncClient) -> None:
    missing = assert_problem(await admin.delete(f"{TOKENS}/{uuid.uuid4()}"), 404)
    assert missing["type"].endswith("not-found")
    assert_problem(await admin.delete(f"{TOKENS}/not-a-uuid"), 422, loc=["path", "token_id"])


async def test_revocation_reaches_another_process_within_the_cache_ttl(
    settings: Settings, issue_token: Issue
) -> None:
    """Without pushed revocations (SQLite, or switched off), the cache's TTL is the bound."""
    ttl = 0.3
    overrides = {"token_cache_seconds": ttl, "token_cache_pushed_seconds": 0}
    async with _two_processes(settings, issue_token, **overrides) as (app_a, app_b, admin_a):
        issued = await issue(admin_a, role="clinician")
        async with (
            _client(app_a, issued["token"]) as victim_a,
            _client(app_b, issued["token"]) as victim_b,
        ):
            assert (await victim_b.get(f"{API}/patients")).status_code == 200  # B caches it
            assert (await admin_a.delete(f"{TOKENS}/{issued['id']}")).status_code == 204
            assert_unauthenticated(await victim_a.get(f"{API}/patients"))  # A: at once
            # B may answer from its cache until the entry is `ttl` old, never longer.
            await asyncio.sleep(ttl + 0.1)
            assert_unauthenticated(await victim_b.get(f"{API}/patients"))


@asynccontextmanager
async def _two_processes(
    settings: Settings, issue_token: Issue, **overrides: float
) -> AsyncIterator[tuple[FastAPI, FastAPI, httpx.AsyncClient]]:
    """Two app instances on one database stand for two processes (workers or machines); with
    an admin client of the first."""
    changed = settings.model_copy(update=overrides)
    app_a, app_b = create_app(changed), create_app(changed)
    admin_token = await issue_token("admin")
    async with (
        app_a.router.lifespan_context(app_a),
        app_b.router.lifespan_context(app_b),
        _client(app_a, admin_token) as admin_a,
    ):
        yield app_a, app_b, admin_a


def _client(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.postgres_only
async def test_a_request_racing_the_revocation_cannot_recache_the_token(
    admin: httpx.AsyncClient, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL only: on SQLite the racing request waits for the revoking writer's lock
    (so the race cannot happen there, and this construction would wait for the lock)."""
    issued = await issue(admin, role="clinician")
    victim = make_client(issued["token"])
    during: list[int] = []
    original = TokenService.revoke

    async def revoke_then_race(self: TokenService, token_id: uuid.UUID) -> None:
        await original(self, token_id)
        # Not committed yet: this request legitimately still passes.
        during.append((await victim.get(f"{API}/instruments")).status_code)

    monkeypatch.setattr(TokenService, "revoke", revoke_then_race)
    assert (await admin.delete(f"{TOKENS}/{issued['id']}")).status_code == 204
    assert during == [200]
    assert_unauthenticated(await victim.get(f"{API}/instruments"))


# --- expiry and bad credentials --------------------------------------------------------------


async def test_an_expired_token_is_401(
    make_client: MakeClient, issue_token: Issue, engine: AsyncEngine
) -> None:
    token = await issue_token("clinician", expires_in_days=30)
    async with engine.begin() as conn:
        await conn.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == sha256(token))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    body = assert_unauthenticated(await make_client(token).get(f"{API}/patients"))
    assert "expired" in body["detail"]


async def test_a_token_stops_working_when_it_expires(
    admin: httpx.AsyncClient, make_client: MakeClient
) -> None:
    issued = await issue(admin, role="clinician", expires_in_days=0.5 / 86_400)  # half a second
    expires_at = parse_time(issued["expires_at"])
    assert expires_at - datetime.now(UTC) <= timedelta(seconds=0.5)
    # Once used, it is in the token cache too: expiry is checked on cached tokens as well.
    await make_client(issued["token"]).get(f"{API}/patients")
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.05)
    assert_unauthenticated(await make_client(issued["token"]).get(f"{API}/patients"))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic xyz",
        "Token abc",
        "Basic {token}",
        "Token {token}",
        "{token}",
        "Bearer otk_" + "A" * 43,
        "Bearer {token}x",
    ],
)
async def test_malformed_or_unknown_credentials_are_401(
    header: str, issue_token: Issue, make_client: MakeClient
) -> None:
    token = await issue_token("admin")
    anonymous = make_client(None)
    response = await anonymous.get(
        f"{API}/patients", headers={"Authorization": header.format(token=token)}
    )
    assert_unauthenticated(response)
    assert token not in response.text


async def test_the_scheme_is_case_insensitive(issue_token: Issue, make_client: MakeClient) -> None:
    token = await issue_token("clinician")
    response = await make_client(None).get(
        f"{API}/patients", headers={"Authorization": f"bearer {token}"}
    )
    assert response.status_code == 200


async def test_admins_list_tokens_without_secrets_or_hashes(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    issued = (await admin.post(f"{API}/tokens", json={"role": "dashboard"})).json()
    await admin.delete(f"{API}/tokens/{issued['id']}")
    listing = await admin.get(f"{API}/tokens")
    assert listing.status_code == 200
    rows = {t["id"]: t for t in listing.json()["items"]}
    assert rows[issued["id"]]["role"] == "dashboard"
    assert rows[issued["id"]]["revoked_at"] is not None
    async with engine.connect() as conn:
        digests = [
            r[0] for r in (await conn.execute(text("SELECT token_hash FROM api_tokens"))).all()
        ]
    assert issued["token"] not in listing.text
    assert not any(d in listing.text for d in digests)
    assert (await client.get(f"{API}/tokens")).status_code == 403


# --- Revocations pushed to every process (PostgreSQL LISTEN/NOTIFY) ---------------------------


def _principal() -> Principal:
    return Principal(uuid.uuid4(), "clinician", None, None)


def test_the_cache_keeps_tokens_longer_only_while_it_hears_revocations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr("app.auth.cache.time.monotonic", lambda: clock[0])
    cache = TokenCache(ttl=1.0, pushed_ttl=300.0)
    principal = _principal()

    cache.put("a", principal)
    clock[0] = 2.0
    assert cache.get("a") is None  # not listening: the short TTL

    cache.hear_revocations(True)
    cache.put("a", principal)
    clock[0] = 200.0
    assert cache.get("a") == principal  # listening: the long one

    cache.hear_revocations(False)  # a revocation may go unheard from now on
    assert len(cache) == 0


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> bool:
    """Whether ``check`` turns true within ``seconds`` (notifications arrive asynchronously)."""
    for _ in range(int(seconds / 0.05)):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def _listening(app: FastAPI) -> bool:
    return auth_state(app).token_cache.listening


@pytest.mark.postgres_only
async def test_a_revocation_reaches_every_listening_process_at_once(
    settings: Settings, issue_token: Issue
) -> None:
    """Both processes would trust their copy for an hour: only the notification, delivered when
    the revocation commits, can make the other one refuse the token."""
    hour = {"token_cache_seconds": 3600, "token_cache_pushed_seconds": 3600}
    async with _two_processes(settings, issue_token, **hour) as (app_a, app_b, admin_a):
        assert await _eventually(lambda: _listening(app_a))
        assert await _eventually(lambda: _listening(app_b))
        issued = await issue(admin_a, role="clinician")
        async with _client(app_b, issued["token"]) as victim_b:
            assert (await victim_b.get(f"{API}/patients")).status_code == 200  # B caches it
            assert len(auth_state(app_b).token_cache) > 0
            assert (await admin_a.delete(f"{TOKENS}/{issued['id']}")).status_code == 204

            async def refused() -> bool:
                return (await victim_b.get(f"{API}/patients")).status_code == 401

            assert await _eventually(refused)


@pytest.mark.postgres_only
async def test_a_lost_listener_empties_the_cache_until_it_listens_again(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    application = create_app(settings)
    token = await issue_token("clinician")
    async with (
        application.router.lifespan_context(application),
        _client(application, token) as client,
    ):
        cache = auth_state(application).token_cache
        listener = auth_state(application).revocations
        assert listener is not None
        assert await _eventually(lambda: _listening(application))
        assert (await client.get(f"{API}/patients")).status_code == 200
        assert len(cache) == 1
        async with engine.connect() as admin:  # a restart or failover, as the listener sees it
            pid = listener.backend_pid
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        async def deaf_and_empty() -> bool:
            return not cache.listening and len(cache) == 0

        async def listening_again() -> bool:
            return cache.listening and listener.backend_pid != pid

        assert await _eventually(deaf_and_empty, seconds=5)
        assert await _eventually(listening_again)
        assert (await client.get(f"{API}/patients")).status_code == 200
