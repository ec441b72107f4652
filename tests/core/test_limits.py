"""Limits (OWASP API4) and protective headers: body size, batch and page size, per-token rate
limit, statement timeout; no-store caching, request ids, CORS allow-list, no stack traces."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message, Scope

from app.core.config import Settings
from app.core.limits import (
    BodySizeLimitMiddleware,
    RateLimitMiddleware,
    TokenBuckets,
    rate_limit_key,
)
from app.core.state import app_state
from app.patients.service import PatientService
from tests.factories import API, ago, create_patient
from tests.support import Issue, assert_problem, audit_rows, client_of, running


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON, padded with whitespace (still valid JSON) to exactly ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


async def chunks(data: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


JSON = {"Content-Type": "application/json"}

# --- Body size ------------------------------------------------------------------------------


def test_default_body_limit_is_2_mib() -> None:
    assert Settings().max_body_bytes == 2 * 1024 * 1024


async def test_a_full_batch_fits_well_under_the_default_limit(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    items = [
        {"instrument": "pain-nrs", "value": i % 11, "recorded_at": ago(minutes=i + 1)}
        for i in range(500)
    ]
    body = json.dumps({"observations": items}).encode()
    assert len(body) < Settings().max_body_bytes // 10
    response = await client.post(
        f"{API}/patients/{patient['id']}/observations/batch", content=body, headers=JSON
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_body_is_413_and_writes_nothing(
    settings: Settings, engine: AsyncEngine, issue_token: Issue, chunked: bool
) -> None:
    limit = 4096
    async with (
        running(settings, max_body_bytes=limit) as app,
        client_of(app, await issue_token("clinician")) as c,
    ):
        patient = await create_patient(c)
        url = f"{API}/patients/{patient['id']}/observations/batch"
        item = {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=1)}
        body = json.dumps({"observations": [item] * 100}).encode()
        assert len(body) > limit
        content: bytes | AsyncIterator[bytes] = chunks(body) if chunked else body
        # With an Idempotency-Key too: that middleware (inside this one) reads the body first.
        headers = JSON | {"Idempotency-Key": f"too-large-{chunked}"}
        response = await c.post(url, content=content, headers=headers)
        assert ("content-length" in response.request.headers) is not chunked
        problem = assert_problem(response, 413)
        assert problem["type"].endswith("payload-too-large")
        assert str(limit) in problem["detail"]
        assert response.headers["connection"] == "close"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-request-id"]
        stored = await c.get(f"{API}/patients/{patient['id']}/observations")
        assert stored.json()["items"] == []
        assert await audit_rows(engine, response.headers["x-request-id"]) == 0


async def test_a_chunked_body_is_not_read_past_the_limit() -> None:
    """The middleware stops pulling chunks as soon as the count passes the limit."""
    pulled = 0
    sent: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("the whole body was read")

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/api/v1/x", "headers": []}
    await BodySizeLimitMiddleware(app, max_bytes=2500)(scope, receive, send)
    assert pulled == 3
    assert sent[0]["status"] == 413


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_at_the_limit_is_accepted(
    settings: Settings, issue_token: Issue, chunked: bool
) -> None:
    limit = 2048
    async with (
        running(settings, max_body_bytes=limit) as app,
        client_of(app, await issue_token("clinician")) as c,
    ):
        url = f"{API}/patients"
        at_limit = padded({"name": "Ada"}, limit)
        body: bytes | AsyncIterator[bytes] = chunks(at_limit) if chunked else at_limit
        assert (await c.post(url, content=body, headers=JSON)).status_code == 201
        over = padded({"name": "Ada"}, limit + 1)
        body = chunks(over) if chunked else over
        assert_problem(await c.post(url, content=body, headers=JSON), 413)


# --- Batch and page size --------------------------------------------------------------------


async def test_a_batch_of_501_is_422(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    item = {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=1)}
    url = f"{API}/patients/{patient['id']}/observations/batch"
    assert_problem(await client.post(url, json={"observations": [item] * 501}), 422)


async def test_a_page_of_501_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/patients", params={"limit": 501}), 422)


# --- Rate limit -----------------------------------------------------------------------------


def test_rate_limit_is_off_by_default(app: FastAPI) -> None:
    assert Settings().rate_limit_per_minute == 0
    middlewares: list[object] = [m.cls for m in app.user_middleware]
    assert RateLimitMiddleware not in middlewares


async def test_a_token_over_its_burst_gets_429_with_retry_after_and_others_do_not(
    settings: Settings, issue_token: Issue
) -> None:
    first, second = await issue_token("clinician"), await issue_token("clinician")
    async with (
        running(settings, rate_limit_per_minute=60, rate_limit_burst=3) as app,
        client_of(app, first) as a,
        client_of(app, second) as b,
    ):
        for _ in range(3):
            assert (await a.get(f"{API}/instruments")).status_code == 200
        response = await a.get(f"{API}/instruments")
        problem = assert_problem(response, 429)
        assert problem["type"].endswith("rate-limited")
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["x-request-id"]
        assert response.headers["cache-control"] == "no-store"
        assert (await b.get(f"{API}/instruments")).status_code == 200
        # The limit applies to the API, not to the operations endpoints.
        assert (await a.get("/healthz")).status_code == 200


async def test_requests_without_a_token_are_limited_per_client(settings: Settings) -> None:
    async with (
        running(settings, rate_limit_per_minute=60, rate_limit_burst=2) as app,
        client_of(app) as anon,
    ):
        for _ in range(2):
            assert_problem(await anon.get(f"{API}/instruments"), 401)
        assert_problem(await anon.get(f"{API}/instruments"), 429)


def test_buckets_refill_and_say_how_long_to_wait() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_minute=6, burst=2, clock=lambda: now[0])  # one per 10 s
    assert buckets.take("a") == 0
    assert buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(10)
    assert buckets.take("b") == 0  # its own bucket
    now[0] = 4.0
    assert buckets.take("a") == pytest.approx(6)
    now[0] = 10.0
    assert buckets.take("a") == 0  # refilled one
    assert buckets.take("a") > 0


def test_buckets_forget_idle_keys_and_stay_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=5, max_keys=3, clock=lambda: now[0])
    for key in "abcd":
        buckets.take(key)
    assert len(buckets) == 3  # the least recently used went
    now[0] = 5.0  # refilled: indistinguishable from new, so dropped
    buckets.take("e")
    assert len(buckets) == 1


def test_the_key_is_a_hash_of_the_token_never_the_token() -> None:
    def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {"type": "http", "headers": headers, "client": ("10.0.0.7", 5000)}

    key = rate_limit_key(scope([(b"authorization", b"Bearer sekrit-token")]))
    assert key.startswith("token:")
    assert "sekrit" not in key
    assert key == rate_limit_key(scope([(b"authorization", b"bearer  sekrit-token ")]))
    assert rate_limit_key(scope([])) == "client:10.0.0.7"


# --- statement_timeout (PostgreSQL) ---------------------------------------------------------


@pytest.mark.postgres_only
async def test_every_connection_has_the_statement_timeout(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        value = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
    assert value == "5s"


@pytest.mark.postgres_only
async def test_a_query_cancelled_by_the_statement_timeout_is_a_503_problem(
    settings: Settings, engine: AsyncEngine, issue_token: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_get(self: PatientService, patient_id: object) -> object:
        await self.session.execute(text("SELECT pg_sleep(1)"))
        raise AssertionError("the statement should have been cancelled")

    token = await issue_token("clinician")
    async with running(settings, db_statement_timeout_ms=50) as app, client_of(app, token) as c:
        patient = await create_patient(c)
        monkeypatch.setattr(PatientService, "get", slow_get)
        response = await c.get(f"{API}/patients/{patient['id']}")
    problem = assert_problem(response, 503)
    assert problem["type"].endswith("query-timeout")
    assert response.headers["retry-after"] == "1"
    assert "pg_sleep" not in response.text
    assert "cancel" not in response.text.lower()
    # The failure is in the audit trail (written apart, after the rollback).
    assert await audit_rows(engine, response.headers["x-request-id"]) == 1


@pytest.mark.postgres_only
async def test_a_connection_the_database_dropped_is_a_503_and_the_next_request_works(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """No pre-ping round trip on every checkout: a dead pooled connection fails one request
    with a retryable 503, and the pool is renewed for the next."""
    token = await issue_token("clinician")
    async with (
        running(settings, db_pool_size=1, db_max_overflow=0) as app,
        client_of(app, token) as c,
    ):
        patient = await create_patient(c)
        async with app_state(app).engine.connect() as conn:  # the pool's only connection
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as admin:  # a restart or failover, as the pool sees it
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        dropped = await c.get(f"{API}/patients/{patient['id']}")
        again = await c.get(f"{API}/patients/{patient['id']}")

    problem = assert_problem(dropped, 503)
    assert problem["type"].endswith("database-unavailable")
    assert dropped.headers["retry-after"] == "1"
    assert again.status_code == 200
    assert await audit_rows(engine, dropped.headers["x-request-id"]) == 1


class _Cancelled(Exception):
    sqlstate = "57014"  # what asyncpg (through SQLAlchemy) reports for a cancelled statement


@pytest.mark.parametrize(
    ("sqlstate", "status"), [("57014", 503), ("23505", 500)], ids=["cancelled", "other"]
)
async def test_only_a_cancelled_statement_becomes_a_503(
    app: FastAPI,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    sqlstate: str,
    status: int,
) -> None:
    """The mapping in get_session, on any database (PostgreSQL cancels for real above)."""
    patient = await create_patient(client)
    error = _Cancelled("canceling statement due to statement timeout")
    error.sqlstate = sqlstate

    async def failing_get(self: PatientService, patient_id: object) -> object:
        raise DBAPIError("SELECT ...", {}, error)

    monkeypatch.setattr(PatientService, "get", failing_get)
    token = client.headers["authorization"].removeprefix("Bearer ")
    async with client_of(app, token, raise_app_exceptions=False) as c:
        response = await c.get(f"{API}/patients/{patient['id']}")
    assert_problem(response, status)
    assert "statement" not in response.text


# --- Headers --------------------------------------------------------------------------------


async def test_api_responses_are_not_cached_and_carry_a_request_id(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    for response in (
        await client.get(f"{API}/patients/{patient['id']}"),
        await client.get(f"{API}/patients"),
        await client.get(f"{API}/patients/00000000-0000-4000-8000-000000000009"),  # 404
        await anonymous.get(f"{API}/patients"),  # 401
    ):
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert len(response.headers["x-request-id"]) == 32
    ids = {(await client.get(f"{API}/instruments")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


async def test_health_checks_carry_a_request_id_but_no_no_store(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("cache-control", "")
    assert response.headers["x-request-id"]


async def test_no_cors_by_default(client: httpx.AsyncClient) -> None:
    origin = {"Origin": "https://dash.example"}
    response = await client.get(f"{API}/instruments", headers=origin)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        f"{API}/instruments", headers=origin | {"Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_only_the_configured_origins(
    settings: Settings, issue_token: Issue
) -> None:
    token = await issue_token("dashboard")
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with (
        running(settings, cors_origins=["https://dash.example"]) as app,
        client_of(app, token) as c,
    ):
        allowed = await c.options(
            f"{API}/cohort/summary", headers={"Origin": "https://dash.example"} | preflight
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

        refused = await c.options(
            f"{API}/cohort/summary", headers={"Origin": "https://evil.example"} | preflight
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        actual = await c.get(f"{API}/cohort/summary", headers={"Origin": "https://dash.example"})
        assert actual.status_code == 200
        assert actual.headers["access-control-allow-origin"] == "https://dash.example"
        exposed = actual.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed
        assert "x-request-id" in exposed

        other = await c.get(f"{API}/cohort/summary", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_a_500_returns_no_stack_trace_or_message(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = await create_patient(client)

    async def explode(self: PatientService, patient_id: object) -> object:
        raise RuntimeError("secret detail Zelda MRN-1234")

    monkeypatch.setattr(PatientService, "get", explode)
    token = client.headers["authorization"].removeprefix("Bearer ")
    async with client_of(app, token, raise_app_exceptions=False) as c:
        response = await c.get(f"{API}/patients/{patient['id']}")
    body = assert_problem(response, 500)
    assert body["detail"] == "The server could not complete the request."
    for leak in ("secret detail", "Zelda", "MRN-1234", "Traceback", "RuntimeError", ".py"):
        assert leak not in response.text
    assert len(response.headers["x-request-id"]) == 32  # to match a report with the log


SECRET = "secret detail Zelda MRN-1234"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def _captured(*names: str) -> Iterator[_Records]:
    """The lines the loggers ``names`` write in the block, as their handlers would see them."""
    records = _Records()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(records)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(records)


async def test_a_500_under_uvicorn_logs_the_stack_and_request_id_but_not_the_message(
    live_server: str,
    issue_token: Issue,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Starlette re-raises the exception after answering and uvicorn logs it: with its type
    and stack, never its message (a driver's can quote patient data)."""

    async def explode(self: PatientService, patient_id: object) -> object:
        raise RuntimeError(SECRET)  # the stack quotes this line: the message is in a constant

    monkeypatch.setattr(PatientService, "get", explode)
    token = await issue_token("clinician")
    with _captured("uvicorn", "app") as records:
        async with httpx.AsyncClient(base_url=live_server) as c:
            headers = {"Authorization": f"Bearer {token}"}
            response = await c.get(f"{API}/patients/{uuid.uuid4()}", headers=headers)
        for _ in range(200):  # uvicorn logs once the 500 is sent and the exception reaches it
            if any("Exception in ASGI application" in line for line in records.lines):
                break
            await asyncio.sleep(0.025)
    assert response.status_code == 500
    logged = "\n".join(records.lines)
    assert "Exception in ASGI application" in logged  # uvicorn's own line, filtered
    assert "RuntimeError (message withheld" in logged
    assert "in explode" in logged  # the stack is kept
    assert f"(request {response.headers['x-request-id']})" in logged  # the app's line
    for leak in ("secret detail", "Zelda", "MRN-1234"):
        assert leak not in logged


def _logged(name: str, message: str, exc: Exception) -> str:
    """The line the logger ``name`` writes for ``message`` with ``exc`` (as it was raised)."""
    with _captured(name) as records:
        try:
            raise exc
        except type(exc):
            logging.getLogger(name).error(message, exc_info=True)
    [line] = records.lines
    return line


def test_a_task_exception_asyncio_logs_withholds_its_message(app: FastAPI) -> None:
    line = _logged("asyncio", "Task exception was never retrieved", ValueError(SECRET))
    assert "ValueError (message withheld" in line
    assert "Zelda" not in line


def test_uvicorn_keeps_the_message_of_an_error_outside_requests(app: FastAPI) -> None:
    # A failed start is about configuration (no patient data), and the operator needs it.
    refused = OSError("connection refused by 127.0.0.1:5432")
    line = _logged("uvicorn.error", "Application startup failed. Exiting.", refused)
    assert "OSError: connection refused by 127.0.0.1:5432" in line


# --- The schema documents these answers -----------------------------------------------------


async def test_405_names_every_method_of_the_resource(client: httpx.AsyncClient) -> None:
    response = await client.request("PUT", f"{API}/patients")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, POST"
    item = await client.options(f"{API}/patients/00000000-0000-4000-8000-000000000009")
    assert item.headers["allow"] == "GET, PATCH"


def test_the_schema_documents_the_limits_and_errors(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    create = schema["paths"]["/api/v1/patients/{patient_id}/observations/batch"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    for status in ("401", "403", "404", "409", "413", "422", "429", "503"):
        content = create["responses"][status]["content"]
        assert content["application/problem+json"]["schema"]["title"] == "Problem", status
    assert "Retry-After" in create["responses"]["429"]["headers"]
    read = schema["paths"]["/api/v1/patients"]["get"]["responses"]
    assert "409" not in read
    assert "security" not in schema["paths"]["/healthz"]["get"]


async def test_limits_answer_fhir_requests_in_fhir_format(
    settings: Settings, issue_token: Issue
) -> None:
    token = await issue_token("integration")
    async with (
        running(settings, max_body_bytes=16, rate_limit_per_minute=60, rate_limit_burst=1) as app,
        client_of(app, token) as c,
    ):
        too_large = await c.post("/fhir/R4/Patient", content=b"{" + b" " * 32 + b"}")
        assert too_large.status_code == 413
        assert too_large.headers["content-type"].startswith("application/fhir+json")
        assert too_large.json()["resourceType"] == "OperationOutcome"
        limited = await c.get("/fhir/R4/metadata")
        assert limited.status_code == 429
        assert limited.json()["resourceType"] == "OperationOutcome"
        assert limited.headers["retry-after"]
