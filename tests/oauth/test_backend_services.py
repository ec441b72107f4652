"""SMART Backend Services at `POST /oauth/token` (`grant_type=client_credentials`), with real
keys and real signed assertions: what is issued, every refusal with its RFC 6749 error, the
jti replay store, scopes narrowed to the registration and enforced on /fhir and /api, and a
revoked client's tokens stopping at once (in every process)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.auth.models import ApiToken
from app.auth.state import auth_state
from app.core.config import Settings
from app.main import create_app
from app.oauth.models import ClientAssertion
from tests.factories import API, create_course, create_observation, create_patient, create_session
from tests.oauth.support import (
    JWT_BEARER,
    TOKEN_URL,
    Signer,
    credentials,
    ec_signer,
    get_token,
    register,
    request_token,
    rsa_signer,
)
from tests.support import Issue, MakeClient, client_of, running

CLIENTS = f"{API}/clients"


async def _audit(engine: AsyncEngine, response: httpx.Response) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(
                    AuditEvent.action,
                    AuditEvent.resource_type,
                    AuditEvent.resource_id,
                    AuditEvent.token_id,
                    AuditEvent.role,
                    AuditEvent.client_id,
                    AuditEvent.outcome,
                    AuditEvent.status,
                ).where(AuditEvent.request_id == response.headers["x-request-id"])
            )
        ).one()


# --- a token ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", [rsa_signer(), ec_signer()], ids=["RS384", "ES384"])
async def test_a_registered_client_gets_a_token_with_a_signed_assertion(
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
    signer: Signer,
) -> None:
    client_id = await register(admin, signer, scope="system/*.rs")
    response = await request_token(anonymous, **credentials(signer.assertion(client_id)))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, "system/*.rs")

    ehr = make_client(body["access_token"])
    before_reading = datetime.now(UTC).isoformat()
    reading = await ehr.get("/fhir/R4/Observation")
    assert reading.status_code == 200, reading.text

    # the token: the client's role and scope, its client, five minutes
    async with engine.connect() as conn:
        token = (
            await conn.execute(
                select(
                    ApiToken.id, ApiToken.role, ApiToken.scope, ApiToken.client_id,
                    ApiToken.created_at, ApiToken.expires_at,
                ).where(ApiToken.client_id == uuid.UUID(client_id))
            )
        ).one()  # fmt: skip
    assert (token.role, token.scope, str(token.client_id)) == (
        "integration",
        "system/*.rs",
        client_id,
    )
    assert token.expires_at - token.created_at == timedelta(seconds=300)
    # the token request's audit row: the new token, the client; the FHIR read's: the client
    issued = await _audit(engine, response)
    assert tuple(issued) == (
        "create", "token", client_id, token.id, "integration", uuid.UUID(client_id),
        "allowed", 200,
    )  # fmt: skip
    read = await _audit(engine, reading)
    assert (read.token_id, read.client_id, read.outcome) == (
        token.id,
        uuid.UUID(client_id),
        "allowed",
    )
    # and the trail shows it to admins
    since: dict[str, str | int] = {"since": before_reading, "limit": 500}  # others: older
    trail = (await admin.get(f"{API}/audit", params=since)).json()["items"]
    [listed] = [row for row in trail if row["request_id"] == reading.headers["x-request-id"]]
    assert (listed["client_id"], listed["device_id"]) == (client_id, None)


async def test_the_lifetime_is_a_setting(settings: Settings, issue_token: Issue) -> None:
    signer = ec_signer()
    async with running(settings, oauth_access_token_seconds=60) as application:
        async with client_of(application, await issue_token("admin")) as admin:
            client_id = await register(admin, signer)
        async with client_of(application) as anonymous:
            body = await get_token(anonymous, client_id, signer)
    assert body["expires_in"] == 60


async def test_an_expired_access_token_is_a_401(
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    token = (await get_token(anonymous, client_id, signer))["access_token"]
    async with engine.begin() as conn:
        await conn.execute(
            ApiToken.__table__.update()  # type: ignore[attr-defined]
            .where(ApiToken.client_id == uuid.UUID(client_id))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = await make_client(token).get("/fhir/R4/Observation")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        ("system/*.cruds", "system/*.rs"),
        ("system/Observation.rs", "system/Observation.rs"),
        ("system/Observation.read", "system/Observation.read"),
        ("launch/patient openid system/Patient.rs system/CarePlan.c", "system/Patient.rs"),
        ("system/*.*", "system/*.rs"),
    ],
)
async def test_the_granted_scope_never_exceeds_the_registered_one(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, requested: str, granted: str
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer, scope="system/*.rs")
    assert (await get_token(anonymous, client_id, signer, requested))["scope"] == granted


# --- every refusal ----------------------------------------------------------------------------

Form = dict[str, str]
# A refusal case: builds the form from (client_id, signer, other signer of the same kid).
Case = Callable[[str, Signer, Signer], Form]


def _with(**changes: Any) -> Case:
    """The usual form, its assertion signed with ``changes`` (claims, exp_in, aud, alg)."""

    def build(client_id: str, signer: Signer, _other: Signer) -> Form:
        return credentials(signer.assertion(client_id, **changes))

    return build


def _form(**changes: str | None) -> Case:
    """The usual form (a valid assertion), with fields changed or (None) left out."""

    def build(client_id: str, signer: Signer, _other: Signer) -> Form:
        form = credentials(signer.assertion(client_id))
        for name, value in changes.items():
            if value is None:
                form.pop(name, None)
            else:
                form[name] = value
        return form

    return build


def _signed_by_other_key(client_id: str, _signer: Signer, other: Signer) -> Form:
    return credentials(other.assertion(client_id))  # same kid, another key: bad signature


def _unknown_client(_client_id: str, signer: Signer, _other: Signer) -> Form:
    return credentials(signer.assertion(str(uuid.uuid4())))


def _unsigned(client_id: str, signer: Signer, _other: Signer) -> Form:
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "jti": "x", "exp": 2**31}
    return credentials(jwt.encode(claims, "", algorithm="none", headers={"kid": signer.kid}))


def _hmac_with_the_public_key(client_id: str, signer: Signer, _other: Signer) -> Form:
    """The algorithm confusion attack: HS384 keyed with the public JWK's text."""
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "jti": "x", "exp": 2**31}
    secret = str(signer.jwk()).encode()
    return credentials(jwt.encode(claims, secret, algorithm="HS384", headers={"kid": signer.kid}))


REFUSALS: list[tuple[str, Case, int, str]] = [
    ("wrong aud", _with(aud="https://elsewhere.example/oauth/token"), 401, "invalid_client"),
    ("aud the FHIR base", _with(aud="http://test/fhir/R4"), 401, "invalid_client"),
    ("expired", _with(exp_in=-120), 401, "invalid_client"),
    ("exp too far ahead", _with(exp_in=420), 401, "invalid_client"),
    ("unknown kid", _with(headers={"kid": "nobody"}), 401, "invalid_client"),
    ("no kid", _with(headers={"kid": None}), 401, "invalid_client"),
    ("RS256", _with(alg="RS256"), 401, "invalid_client"),
    ("RS512", _with(alg="RS512"), 401, "invalid_client"),
    ("alg none", _unsigned, 401, "invalid_client"),
    ("HS384 with the public key", _hmac_with_the_public_key, 401, "invalid_client"),
    ("bad signature", _signed_by_other_key, 401, "invalid_client"),
    ("iss not sub", _with(sub=str(uuid.uuid4())), 401, "invalid_client"),
    ("iss not a client", _unknown_client, 401, "invalid_client"),
    ("no iss", _with(iss=None), 401, "invalid_client"),
    ("no sub", _with(sub=None), 401, "invalid_client"),
    ("no aud", _with(aud=None), 401, "invalid_client"),
    ("no exp", _with(exp=None), 401, "invalid_client"),
    ("no jti", _with(jti=None), 401, "invalid_client"),
    ("jti not a string", _with(jti=7), 401, "invalid_client"),
    ("exp not a number", _with(exp="soon"), 401, "invalid_client"),
    ("exp far beyond any date", _with(exp=10**30), 401, "invalid_client"),
    ("nbf ahead", _with(nbf=2**31), 401, "invalid_client"),
    ("typ not JWT", _with(headers={"typ": "dpop+jwt"}), 401, "invalid_client"),
    ("client_id not iss", _form(client_id=str(uuid.uuid4())), 401, "invalid_client"),
    ("not a JWT", _form(client_assertion="not.a.jwt"), 401, "invalid_client"),
    ("no client_assertion", _form(client_assertion=None), 400, "invalid_request"),
    ("no client_assertion_type", _form(client_assertion_type=None), 400, "invalid_request"),
    ("another assertion type",
     _form(client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
     400, "invalid_request"),
    ("no scope", _form(scope=None), 400, "invalid_scope"),
    ("blank scope", _form(scope=" "), 400, "invalid_scope"),
    ("a scope outside the registration", _form(scope="system/Patient.c"), 400, "invalid_scope"),
    ("a patient scope", _form(scope="patient/*.rs"), 400, "invalid_scope"),
    ("an unknown type", _form(scope="system/Practitioner.rs"), 400, "invalid_scope"),
    ("a granular scope", _form(scope="system/Observation.rs?category=exam"), 400, "invalid_scope"),
    ("a malformed scope", _form(scope="system/Observation.sr"), 400, "invalid_scope"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "status", "error"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_each_refusal_has_its_rfc_6749_error(
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    engine: AsyncEngine,
    case: Case,
    status: int,
    error: str,
) -> None:
    signer = rsa_signer()
    client_id = await register(admin, signer, scope="system/*.rs")
    other = rsa_signer("another key")
    other = Signer(signer.kid, other.alg, other.key)
    response = await request_token(anonymous, **case(client_id, signer, other))
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    async with engine.connect() as conn:
        issued = await conn.scalar(select(func.count()).select_from(ApiToken).where(
            ApiToken.client_id.is_not(None)))  # fmt: skip
    assert issued == 0
    row = await _audit(engine, response)
    assert (row.action, row.resource_type, row.token_id, row.outcome, row.status) == (
        "create",
        "token",
        None,
        "denied",
        status,
    )


async def test_clocks_may_differ_by_a_minute(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    for exp_in in (-30, 330):  # just expired, or a little over five minutes ahead
        form = credentials(signer.assertion(client_id, exp_in=exp_in))
        response = await request_token(anonymous, **form)
        assert response.status_code == 200, (exp_in, response.text)


async def test_an_assertion_is_used_once(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    form = credentials(signer.assertion(client_id, jti="once"))
    assert (await request_token(anonymous, **form)).status_code == 200
    replay = await request_token(anonymous, **form)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "used before" in replay.json()["error_description"]
    # a jti is one client's: another client may use the same one
    other_id = await register(admin, signer, name="Other EHR")
    fresh = credentials(signer.assertion(other_id, jti="once"))
    assert (await request_token(anonymous, **fresh)).status_code == 200


async def test_a_refused_assertion_still_spends_its_jti(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    """An authenticated request refused for its scope has used its assertion all the same."""
    signer = ec_signer()
    client_id = await register(admin, signer, scope="system/Observation.rs")
    assertion = signer.assertion(client_id)
    refused = await request_token(anonymous, **credentials(assertion, "system/Patient.rs"))
    assert refused.json()["error"] == "invalid_scope"
    again = await request_token(anonymous, **credentials(assertion, "system/Observation.rs"))
    assert again.json()["error"] == "invalid_client"


async def test_concurrent_uses_of_one_assertion_get_one_token(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    form = credentials(signer.assertion(client_id))
    responses = await asyncio.gather(*(request_token(anonymous, **form) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]


async def test_expired_jtis_are_forgotten(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with engine.begin() as conn:
        await conn.execute(
            insert(ClientAssertion).values(
                client_id=uuid.UUID(client_id), jti="old", expires_at=long_ago
            )
        )
    await get_token(anonymous, client_id, signer)
    async with engine.connect() as conn:
        jtis = set((await conn.scalars(select(ClientAssertion.jti))).all())
    assert "old" not in jtis
    assert len(jtis) == 1  # the new one, kept until it expires


async def test_a_revoked_client_cannot_authenticate(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    assert (await admin.delete(f"{CLIENTS}/{client_id}")).status_code == 204
    response = await request_token(anonymous, **credentials(signer.assertion(client_id)))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_a_key_rotation_keeps_either_key_working(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    """Both keys registered: an assertion signed by either works (kid picks the key)."""
    old, new = rsa_signer("2026-old"), ec_signer("2026-new")
    client_id = await register(admin, old, new)
    await get_token(anonymous, client_id, old)
    await get_token(anonymous, client_id, new)
    # the kid names the key, its type must fit the algorithm: an EC kid on an RS384 JWT fails
    crossed = Signer("2026-new", "RS384", old.key)
    response = await request_token(anonymous, **credentials(crossed.assertion(client_id)))
    assert response.json()["error"] == "invalid_client"


# --- revocation: its tokens stop at once, everywhere -----------------------------------------


async def test_revoking_a_client_stops_its_tokens_at_once(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, make_client: MakeClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    other_id = await register(admin, signer, name="Another EHR")
    tokens = [(await get_token(anonymous, client_id, signer))["access_token"] for _ in range(2)]
    others = make_client((await get_token(anonymous, other_id, signer))["access_token"])
    ehrs = [make_client(token) for token in tokens]
    for ehr in ehrs:
        assert (await ehr.get("/fhir/R4/Observation")).status_code == 200  # cached now
    assert (await admin.delete(f"{CLIENTS}/{client_id}")).status_code == 204
    for ehr in ehrs:
        assert (await ehr.get("/fhir/R4/Observation")).status_code == 401
    assert (await others.get("/fhir/R4/Observation")).status_code == 200


@asynccontextmanager
async def _two_processes(
    settings: Settings, issue_token: Issue, **overrides: float
) -> AsyncIterator[tuple[FastAPI, FastAPI, httpx.AsyncClient]]:
    """Two app instances on one database stand for two processes; an admin client of the
    first."""
    changed = settings.model_copy(update=overrides)
    app_a, app_b = create_app(changed), create_app(changed)
    async with (
        app_a.router.lifespan_context(app_a),
        app_b.router.lifespan_context(app_b),
        client_of(app_a, await issue_token("admin")) as admin_a,
    ):
        yield app_a, app_b, admin_a


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_revoking_a_client_reaches_another_process_within_the_cache_ttl(
    settings: Settings, issue_token: Issue
) -> None:
    ttl = 0.3
    overrides = {"token_cache_seconds": ttl, "token_cache_pushed_seconds": 0}
    signer = ec_signer()
    async with _two_processes(settings, issue_token, **overrides) as (_, app_b, admin_a):
        client_id = await register(admin_a, signer)
        async with client_of(app_b) as anonymous_b:
            token = (await get_token(anonymous_b, client_id, signer))["access_token"]
        async with client_of(app_b, token) as ehr_b:
            assert (await ehr_b.get("/fhir/R4/Observation")).status_code == 200  # cached in B
            assert (await admin_a.delete(f"{CLIENTS}/{client_id}")).status_code == 204
            await asyncio.sleep(ttl + 0.1)
            assert (await ehr_b.get("/fhir/R4/Observation")).status_code == 401


@pytest.mark.postgres_only
async def test_revoking_a_client_reaches_every_listening_process_at_once(
    settings: Settings, issue_token: Issue
) -> None:
    """Both processes would trust their copy for an hour: only the notifications sent when
    the client's revocation commits can make the other one refuse its tokens."""
    hour = {"token_cache_seconds": 3600, "token_cache_pushed_seconds": 3600}
    signer = ec_signer()
    async with _two_processes(settings, issue_token, **hour) as (app_a, app_b, admin_a):

        async def listening() -> bool:
            caches = (auth_state(app_a).token_cache, auth_state(app_b).token_cache)
            return all(cache.listening for cache in caches)

        assert await _eventually(listening)
        client_id = await register(admin_a, signer)
        async with client_of(app_b) as anonymous_b:
            tokens = [
                (await get_token(anonymous_b, client_id, signer))["access_token"] for _ in range(2)
            ]
        ehrs = [client_of(app_b, token) for token in tokens]
        try:
            for ehr in ehrs:
                assert (await ehr.get("/fhir/R4/Observation")).status_code == 200  # cached
            assert len(auth_state(app_b).token_cache) >= 2
            assert (await admin_a.delete(f"{CLIENTS}/{client_id}")).status_code == 204

            async def all_refused() -> bool:
                statuses = [(await ehr.get("/fhir/R4/Observation")).status_code for ehr in ehrs]
                return statuses == [401, 401]

            assert await _eventually(all_refused)
        finally:
            for ehr in ehrs:
                await ehr.aclose()


# --- scopes bound what a token does -----------------------------------------------------------


async def _patient_with_data(client: httpx.AsyncClient) -> tuple[str, str]:
    patient = await create_patient(client, name="Scoped Patient")
    course = await create_course(client, patient["id"])
    await create_session(client, course["id"])
    await create_observation(client, patient["id"], course_id=course["id"])
    return patient["id"], course["id"]


async def test_a_system_observation_token_reads_observations_and_nothing_else(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    patient_id, _course_id = await _patient_with_data(client)
    signer = ec_signer()
    client_id = await register(admin, signer, scope="system/*.rs")
    token = await get_token(anonymous, client_id, signer, "system/Observation.rs")
    assert token["scope"] == "system/Observation.rs"
    ehr = make_client(token["access_token"])

    observations = await ehr.get("/fhir/R4/Observation", params={"patient": patient_id})
    assert observations.status_code == 200
    assert observations.json()["total"] == 1
    export = await ehr.get(
        "/fhir/R4/$export", params={"_type": "Observation"}, headers={"Prefer": "respond-async"}
    )
    assert export.status_code == 202
    refused = [
        await ehr.get(f"/fhir/R4/Patient/{patient_id}"),
        await ehr.get("/fhir/R4/CarePlan", params={"patient": patient_id}),
        await ehr.get("/fhir/R4/Procedure", params={"patient": patient_id}),
        await ehr.get(f"/fhir/R4/Patient/{patient_id}/$everything"),
        await ehr.get("/fhir/R4/$export", headers={"Prefer": "respond-async"}),  # every type
        await ehr.get(
            "/fhir/R4/$export",
            params={"_type": "Observation,Patient"},
            headers={"Prefer": "respond-async"},
        ),
        await ehr.get(f"{API}/patients"),
        await ehr.get(f"{API}/patients/{patient_id}"),
        await ehr.get(f"{API}/patients/{patient_id}/summary"),
    ]
    for response in refused:
        assert response.status_code == 403, (response.request.url, response.text)
    assert "does not grant" in refused[0].json()["issue"][0]["diagnostics"]
    # a refusal is audited as denied, naming the client
    row = await _audit(engine, refused[0])
    assert (row.outcome, row.status, row.client_id) == ("denied", 403, uuid.UUID(client_id))


async def test_the_export_files_follow_the_scope_too(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
) -> None:
    await _patient_with_data(client)
    signer = ec_signer()
    client_id = await register(admin, signer, scope="system/Observation.rs")
    ehr = make_client(
        (await get_token(anonymous, client_id, signer, "system/*.rs"))["access_token"]
    )
    kick_off = await ehr.get(
        "/fhir/R4/$export", params={"_type": "Observation"}, headers={"Prefer": "respond-async"}
    )
    status_url = kick_off.headers["content-location"]
    manifest = (await ehr.get(status_url)).json()
    [output] = manifest["output"]
    assert (await ehr.get(output["url"])).status_code == 200
    job = status_url.rsplit("/", 1)[-1]
    assert (await ehr.get(f"/fhir/R4/$export-file/{job}/Patient.ndjson")).status_code == 403


async def test_a_dashboard_client_reads_trends_and_the_cohort(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
) -> None:
    patient_id, course_id = await _patient_with_data(client)
    signer = rsa_signer()
    client_id = await register(admin, signer, role="dashboard", scope="system/*.rs")
    dashboard = make_client((await get_token(anonymous, client_id, signer))["access_token"])
    assert (await dashboard.get(f"{API}/patients/{patient_id}/trends")).status_code == 200
    assert (await dashboard.get(f"{API}/cohort/summary")).status_code == 200
    # its role bounds it whatever its scope: no FHIR, no patient records
    assert (await dashboard.get("/fhir/R4/Observation")).status_code == 403
    assert (await dashboard.get(f"{API}/patients/{patient_id}")).status_code == 403
    assert (await dashboard.get(f"{API}/courses/{course_id}")).status_code == 403
    # and its scope bounds it within its role
    narrow = make_client(
        (await get_token(anonymous, client_id, signer, "system/Observation.rs"))["access_token"]
    )
    assert (await narrow.get(f"{API}/patients/{patient_id}/trends")).status_code == 200
    assert (await narrow.get(f"{API}/cohort/summary")).status_code == 403  # CarePlan.s too


async def test_a_client_token_never_administers(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, make_client: MakeClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer, scope="system/*.*")
    ehr = make_client((await get_token(anonymous, client_id, signer, "system/*.*"))["access_token"])
    for path in ("/tokens", "/clients", "/audit"):
        assert (await ehr.get(f"{API}{path}")).status_code == 403
    # write scopes do not widen a read-only role
    assert (await ehr.post(f"{API}/patients", json={"name": "x"})).status_code == 403


async def test_the_token_endpoint_needs_no_bearer_token_and_ignores_one(
    admin: httpx.AsyncClient, make_client: MakeClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    bogus = make_client("not-a-token")
    response = await request_token(bogus, **credentials(signer.assertion(client_id)))
    assert response.status_code == 200
    assert JWT_BEARER in credentials("x").values()
