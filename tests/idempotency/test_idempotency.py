"""Idempotency-Key on POSTs: replay, mismatch, in flight, per-token keys, failures, key
syntax, retention and purge, and concurrent retries producing exactly one write."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.models import ApiToken, IdempotencyKey
from app.auth.tokens import token_hash
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.idempotency import middleware
from app.idempotency.service import purge_expired, purging_in_background, request_hash
from tests.factories import API, ago, create_patient
from tests.support import Issue, MakeClient, assert_problem

PATIENTS = f"{API}/patients"
LOC = ["header", "Idempotency-Key"]


@dataclass
class Caller:
    client: httpx.AsyncClient
    token_id: uuid.UUID


NewCaller = Callable[..., Awaitable[Caller]]


@pytest.fixture
def new_caller(engine: AsyncEngine, issue_token: Issue, make_client: MakeClient) -> NewCaller:
    """A client with a fresh token of ``role``, and that token's id (what keys belong to)."""

    async def new(role: str = "clinician") -> Caller:
        token = await issue_token(role)
        async with engine.connect() as conn:
            stmt = select(ApiToken.id).where(ApiToken.token_hash == token_hash(token))
            token_id: uuid.UUID = (await conn.execute(stmt)).scalar_one()
        return Caller(make_client(token), token_id)

    return new


@pytest.fixture
async def clinician(new_caller: NewCaller) -> Caller:
    return await new_caller()


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


async def post(
    client: httpx.AsyncClient, path: str, body: Any, key: str | bytes | None
) -> httpx.Response:
    """A POST of exactly these bytes (the key's request hash covers the body byte for byte)."""
    headers = {b"content-type": b"application/json"}
    if key is not None:
        headers[b"idempotency-key"] = key if isinstance(key, bytes) else key.encode()
    return await client.post(path, content=encode(body), headers=headers)


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        n: int = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
    return n


async def keys(engine: AsyncEngine) -> list[IdempotencyKey]:
    async with create_sessionmaker(engine)() as session:
        return list((await session.scalars(select(IdempotencyKey))).all())


async def store_key(
    engine: AsyncEngine,
    token_id: uuid.UUID,
    key: str,
    *,
    hash_of: bytes = b"",
    state: str = "processing",
    created_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> None:
    """A key row written directly, as another request (or an older one) would have left it."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "token_id": token_id,
        "key": key,
        "request_hash": request_hash("POST", PATIENTS, b"", hash_of),
        "state": state,
        "created_at": created_at or now,
        "expires_at": expires_at or now + timedelta(hours=24),
    }
    if state == "completed":
        values |= {
            "response_status": 201,
            "response_body": b'{"stored": true}',
            "response_content_type": "application/json",
        }
    async with engine.begin() as conn:
        await conn.execute(insert(IdempotencyKey).values(**values))


async def an_observation_post(caller: Caller) -> tuple[str, str, dict[str, Any]]:
    """A new patient's id, the URL of its observations and a valid observation to post."""
    patient = await create_patient(caller.client)
    body = {"instrument": "pain-nrs", "value": 6, "recorded_at": ago(hours=1)}
    return patient["id"], f"{PATIENTS}/{patient['id']}/observations", body


# --- replay ------------------------------------------------------------------------------


async def test_a_repeated_post_replays_the_first_response_and_writes_once(
    clinician: Caller, engine: AsyncEngine
) -> None:
    body = {"name": "Ada Replay", "sex": "female"}
    first = await post(clinician.client, PATIENTS, body, "create-ada")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    again = await post(clinician.client, PATIENTS, body, "create-ada")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.content == first.content
    assert await count(engine, "patients") == 1
    [row] = await keys(engine)
    assert (row.state, row.response_status, row.token_id) == (
        "completed",
        201,
        clinician.token_id,
    )


async def test_a_replay_still_gets_a_request_id_and_no_store(clinician: Caller) -> None:
    await post(clinician.client, PATIENTS, {}, "headers-1")
    again = await post(clinician.client, PATIENTS, {}, "headers-1")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"]
    assert again.headers["cache-control"] == "no-store"


async def test_an_observation_post_is_replayed(clinician: Caller, engine: AsyncEngine) -> None:
    _, url, body = await an_observation_post(clinician)
    first = await post(clinician.client, url, body, "obs-1")
    assert first.status_code == 201, first.text
    again = await post(clinician.client, url, body, "obs-1")
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(engine, "observations") == 1


async def test_a_batch_is_replayed(clinician: Caller, engine: AsyncEngine) -> None:
    patient = await create_patient(clinician.client)
    url = f"{PATIENTS}/{patient['id']}/observations/batch"
    items = [
        {"instrument": "pain-nrs", "value": v, "recorded_at": ago(hours=5 - v)} for v in (1, 2)
    ]
    first = await post(clinician.client, url, {"observations": items}, "sync-2026-01-01")
    assert first.status_code == 200, first.text
    again = await post(clinician.client, url, {"observations": items}, "sync-2026-01-01")
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(engine, "observations") == 2


async def test_a_quoted_key_is_the_same_key(clinician: Caller, engine: AsyncEngine) -> None:
    # The IETF draft's form is a structured-field string: "abc" names the key abc.
    first = await post(clinician.client, PATIENTS, {}, '"quoted-1"')
    again = await post(clinician.client, PATIENTS, {}, "quoted-1")
    assert first.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(engine, "patients") == 1


async def audit_rows(admin: httpx.AsyncClient, patient_id: str) -> list[tuple[Any, ...]]:
    """The patient's audit rows about observations: action, status, outcome, request id."""
    response = await admin.get(f"{API}/audit", params={"patient_id": patient_id, "limit": 500})
    assert response.status_code == 200, response.text
    return [
        (r["action"], r["status"], r["outcome"], r["request_id"])
        for r in response.json()["items"]
        if r["resource_type"] == "observation"
    ]


async def test_a_replay_is_audited_as_a_read_of_the_stored_response(
    clinician: Caller, admin: httpx.AsyncClient
) -> None:
    patient_id, url, body = await an_observation_post(clinician)
    first = await post(clinician.client, url, body, "audited-1")
    again = await post(clinician.client, url, body, "audited-1")
    assert again.headers["idempotent-replayed"] == "true"
    assert await audit_rows(admin, patient_id) == [
        ("create", 201, "allowed", first.headers["x-request-id"]),
        ("read", 201, "allowed", again.headers["x-request-id"]),
    ]


async def test_a_replay_goes_only_to_a_token_still_valid(
    clinician: Caller, admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    _, url, body = await an_observation_post(clinician)
    assert (await post(clinician.client, url, body, "revoked-1")).status_code == 201
    revoked = await admin.delete(f"{API}/tokens/{clinician.token_id}")
    assert revoked.status_code == 204
    again = await post(clinician.client, url, body, "revoked-1")
    assert_problem(again, 401)
    assert "idempotent-replayed" not in again.headers
    assert await count(engine, "observations") == 1


# --- mismatch and in flight --------------------------------------------------------------


async def test_the_same_key_with_another_body_is_422_and_writes_nothing(
    clinician: Caller, engine: AsyncEngine
) -> None:
    assert (await post(clinician.client, PATIENTS, {"name": "One"}, "k-1")).status_code == 201
    response = await post(clinician.client, PATIENTS, {"name": "Two"}, "k-1")
    body = assert_problem(response, 422, loc=LOC)
    assert "different request" in body["errors"][0]["msg"]
    assert await count(engine, "patients") == 1


async def test_a_key_answer_is_audited_with_its_status(
    clinician: Caller, admin: httpx.AsyncClient
) -> None:
    patient_id, url, body = await an_observation_post(clinician)
    first = await post(clinician.client, url, body, "k-audit")
    other = await post(clinician.client, url, body | {"value": 7}, "k-audit")
    assert_problem(other, 422, loc=LOC)
    assert await audit_rows(admin, patient_id) == [
        ("create", 201, "allowed", first.headers["x-request-id"]),
        ("create", 422, "allowed", other.headers["x-request-id"]),
    ]


async def test_the_same_key_on_another_path_is_422(clinician: Caller, engine: AsyncEngine) -> None:
    patient = await create_patient(clinician.client)
    assert (await post(clinician.client, PATIENTS, {}, "k-2")).status_code == 201
    observation = {"instrument": "pain-nrs", "value": 3, "recorded_at": ago(hours=1)}
    response = await post(
        clinician.client, f"{PATIENTS}/{patient['id']}/observations", observation, "k-2"
    )
    assert_problem(response, 422, loc=LOC)
    assert await count(engine, "observations") == 0


async def test_a_key_still_in_flight_is_409(clinician: Caller, engine: AsyncEngine) -> None:
    await store_key(engine, clinician.token_id, "busy", hash_of=encode({"name": "Busy"}))
    response = await post(clinician.client, PATIENTS, {"name": "Busy"}, "busy")
    body = assert_problem(response, 409, loc=LOC)
    assert "in progress" in body["detail"]
    assert await count(engine, "patients") == 0


async def test_a_key_left_processing_for_long_is_409_saying_the_request_was_applied(
    clinician: Caller, engine: AsyncEngine
) -> None:
    # A `processing` row commits only with its write: one this old lost its response.
    long_ago = datetime.now(UTC) - timedelta(minutes=30)
    await store_key(engine, clinician.token_id, "stuck", hash_of=b"{}", created_at=long_ago)
    body = assert_problem(await post(clinician.client, PATIENTS, {}, "stuck"), 409, loc=LOC)
    assert "applied" in body["detail"]
    assert "Read the resource" in body["detail"]
    assert await count(engine, "patients") == 0


async def test_a_key_inserted_by_a_racing_request_turns_this_one_into_a_409(
    clinician: Caller, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests found the key absent; the second's INSERT of the key fails at commit,
    and its whole transaction (its patient too) rolls back: a 409, never a 500."""
    first = await post(clinician.client, PATIENTS, {}, "race-1")
    assert first.status_code == 201

    async def found_nothing(*_args: Any) -> None:
        return None  # as if the lookup ran before the first request committed

    monkeypatch.setattr(middleware, "find_key", found_nothing)
    response = await post(clinician.client, PATIENTS, {}, "race-1")
    assert_problem(response, 409, loc=LOC)
    assert await count(engine, "patients") == 1
    [row] = await keys(engine)
    assert row.state == "completed"


# --- scope: one token's keys ------------------------------------------------------------


async def test_keys_belong_to_their_token(
    clinician: Caller, new_caller: NewCaller, engine: AsyncEngine
) -> None:
    other = await new_caller()
    mine = await post(clinician.client, PATIENTS, {"name": "Mine"}, "shared-key")
    theirs = await post(other.client, PATIENTS, {"name": "Mine"}, "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert await count(engine, "patients") == 2
    assert {row.token_id for row in await keys(engine)} == {clinician.token_id, other.token_id}


async def test_another_tokens_key_in_flight_does_not_block(
    clinician: Caller, new_caller: NewCaller, engine: AsyncEngine
) -> None:
    other = await new_caller()
    await store_key(engine, other.token_id, "theirs", hash_of=b"{}")
    assert (await post(clinician.client, PATIENTS, {}, "theirs")).status_code == 201


# --- failures store nothing -------------------------------------------------------------


async def test_a_failed_request_stores_no_key_and_a_corrected_retry_succeeds(
    clinician: Caller, engine: AsyncEngine
) -> None:
    bad = await post(clinician.client, PATIENTS, {"birth_date": "2999-01-01"}, "fix-me")
    assert_problem(bad, 422, loc=["body", "birth_date"])
    assert await keys(engine) == []
    fixed = await post(clinician.client, PATIENTS, {"birth_date": "1960-01-01"}, "fix-me")
    assert fixed.status_code == 201, fixed.text
    assert "idempotent-replayed" not in fixed.headers
    assert await count(engine, "patients") == 1


async def test_a_forbidden_request_stores_no_key(
    new_caller: NewCaller, engine: AsyncEngine
) -> None:
    dashboard = await new_caller("dashboard")
    assert_problem(await post(dashboard.client, PATIENTS, {}, "not-mine"), 403)
    assert await keys(engine) == []


async def test_a_new_token_is_not_kept_and_a_repeat_is_409(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # The secret is shown once and only its hash is stored: the response is not kept either.
    tokens = f"{API}/tokens"
    before = await count(engine, "api_tokens")
    first = await post(admin, tokens, {"role": "dashboard"}, "new-dashboard-token")
    assert first.status_code == 201, first.text
    again = await post(admin, tokens, {"role": "dashboard"}, "new-dashboard-token")
    body = assert_problem(again, 409, loc=LOC)
    assert "shown only once" in body["detail"]
    assert await count(engine, "api_tokens") == before + 1
    [row] = await keys(engine)
    assert (row.state, row.response_body) == ("completed", None)


# --- the header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "clé".encode(), "tab\there", "del\x7f"],
    ids=["empty", "256-chars", "non-ascii", "tab", "del"],
)
async def test_an_invalid_key_is_422(
    clinician: Caller, engine: AsyncEngine, key: str | bytes
) -> None:
    assert_problem(await post(clinician.client, PATIENTS, {}, key), 422, loc=LOC)
    assert await count(engine, "patients") == 0


async def test_two_key_headers_are_422(clinician: Caller, engine: AsyncEngine) -> None:
    headers = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = await clinician.client.post(PATIENTS, json={}, headers=headers)
    assert_problem(response, 422, loc=LOC)
    assert await count(engine, "patients") == 0


async def test_a_key_of_255_printable_characters_is_accepted(clinician: Caller) -> None:
    key = ("A-z 0~!" * 40)[:255]
    assert (await post(clinician.client, PATIENTS, {}, key)).status_code == 201
    assert (await post(clinician.client, PATIENTS, {}, key)).headers["idempotent-replayed"]


async def test_a_post_without_a_key_is_unchanged(clinician: Caller, engine: AsyncEngine) -> None:
    for _ in range(2):
        assert (await post(clinician.client, PATIENTS, {}, None)).status_code == 201
    assert await count(engine, "patients") == 2
    assert await keys(engine) == []


@pytest.mark.parametrize("key", ["anon-1", ""], ids=["valid-key", "invalid-key"])
async def test_a_key_without_a_valid_token_is_the_usual_401(
    anonymous: httpx.AsyncClient, make_client: MakeClient, engine: AsyncEngine, key: str
) -> None:
    for client in (anonymous, make_client("otk_not-a-real-token")):
        response = await post(client, PATIENTS, {}, key)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await keys(engine) == []
    assert await count(engine, "patients") == 0


# --- retention and purge -----------------------------------------------------------------


async def test_keys_are_kept_for_the_retention_period(
    clinician: Caller, engine: AsyncEngine
) -> None:
    await post(clinician.client, PATIENTS, {}, "kept")
    [row] = await keys(engine)
    assert row.expires_at - row.created_at == timedelta(hours=24)


def test_retention_under_24_hours_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(idempotency_retention_hours=23)
    with pytest.raises(ValidationError):
        Settings(idempotency_purge_seconds=0)
    assert Settings(idempotency_retention_hours=24).idempotency_retention_hours == 24


async def test_purge_removes_expired_keys_and_keeps_the_rest(
    clinician: Caller, engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    await store_key(engine, clinician.token_id, "old", expires_at=now - timedelta(seconds=1))
    await store_key(engine, clinician.token_id, "fresh", expires_at=now + timedelta(hours=1))
    async with create_sessionmaker(engine)() as session, session.begin():
        assert await purge_expired(session) == 1
    assert [row.key for row in await keys(engine)] == ["fresh"]


async def test_the_background_purge_runs_and_stops(clinician: Caller, engine: AsyncEngine) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await store_key(engine, clinician.token_id, "old", expires_at=past)
    async with purging_in_background(create_sessionmaker(engine), 0.01) as task:
        for _ in range(200):
            if not await keys(engine):
                break
            await asyncio.sleep(0.01)
    assert await keys(engine) == []
    assert task.cancelled()


async def test_an_expired_key_not_yet_purged_is_new_again(
    clinician: Caller, engine: AsyncEngine
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await store_key(engine, clinician.token_id, "reused", state="completed", expires_at=past)
    response = await post(clinician.client, PATIENTS, {}, "reused")
    assert response.status_code == 201
    assert "idempotent-replayed" not in response.headers
    [row] = await keys(engine)
    assert row.expires_at > datetime.now(UTC)


# --- concurrency -------------------------------------------------------------------------


async def test_concurrent_retries_write_exactly_once(
    clinician: Caller, engine: AsyncEngine
) -> None:
    """Eight copies of one POST at once (no external_id, so the database would happily take
    eight patients): one 201, the rest replays of it or 409s; never a 500."""
    body = {"name": "Concurrent", "condition": "lumbar pain"}
    responses = await asyncio.gather(
        *(post(clinician.client, PATIENTS, body, "burst-1") for _ in range(8))
    )
    created = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    replayed = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    conflicts = [r for r in responses if r.status_code == 409]
    assert len(created) == 1, [r.status_code for r in responses]
    assert len(created) + len(replayed) + len(conflicts) == 8
    for response in conflicts:
        assert_problem(response, 409, loc=LOC)
    assert all(r.content == created[0].content for r in replayed)
    assert await count(engine, "patients") == 1
    # Once settled, every retry gets the one patient.
    settled = await post(clinician.client, PATIENTS, body, "burst-1")
    assert settled.headers["idempotent-replayed"] == "true"
    assert settled.content == created[0].content
    assert await count(engine, "patients") == 1


async def test_concurrent_posts_with_different_keys_all_write(
    clinician: Caller, engine: AsyncEngine
) -> None:
    responses = await asyncio.gather(
        *(post(clinician.client, PATIENTS, {}, f"distinct-{i}") for i in range(8))
    )
    assert [r.status_code for r in responses] == [201] * 8
    assert await count(engine, "patients") == 8
    assert len(await keys(engine)) == 8
