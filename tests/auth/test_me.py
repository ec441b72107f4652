"""`GET /api/v1/me`: any valid token may read what it is (role, scopes, expiry, and the
patient, client or device it is bound to), and nothing about any patient beyond the id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.auth.service import TokenService
from app.core.db import create_sessionmaker
from app.oauth.models import OAuthClient
from tests.enrolment.support import PATIENT_APP_SCOPE, devices_of, enrol
from tests.factories import API, create_patient
from tests.support import Issue, MakeClient, assert_problem

ME = f"{API}/me"
FIELDS = {"role", "scope", "patient_id", "client_id", "device_id", "expires_at"}


async def me(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(ME)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == FIELDS
    return body


async def audited(engine: AsyncEngine, response: httpx.Response) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    AuditEvent.action,
                    AuditEvent.resource_type,
                    AuditEvent.resource_id,
                    AuditEvent.patient_id,
                    AuditEvent.outcome,
                ).where(AuditEvent.request_id == response.headers["x-request-id"])
            )
        ).one()
    return tuple(row)


@pytest.mark.parametrize("role", ["admin", "clinician", "integration", "dashboard"])
async def test_a_staff_or_system_token_made_by_an_admin(
    role: str, make_client: MakeClient, issue_token: Issue
) -> None:
    body = await me(make_client(await issue_token(role)))
    assert body == {
        "role": role, "scope": None, "patient_id": None, "client_id": None, "device_id": None,
        "expires_at": None,
    }  # fmt: skip


async def test_a_patient_token_made_by_an_admin(
    client: httpx.AsyncClient, make_client: MakeClient, issue_token: Issue, engine: AsyncEngine
) -> None:
    patient = await create_patient(client, name="Never Shown")
    token = make_client(await issue_token("patient", patient["id"], expires_in_days=30))
    response = await token.get(ME)
    body = response.json()
    assert (body["role"], body["patient_id"], body["scope"]) == ("patient", patient["id"], None)
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=29) < expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert "Never Shown" not in response.text
    # Audited: it names the patient the token is bound to.
    assert (await audited(engine, response))[3] == uuid.UUID(patient["id"])


async def test_an_enrolled_apps_token(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    engine: AsyncEngine,
) -> None:
    patient = await create_patient(client)
    app = await enrol(client, anonymous, patient["id"])
    [device] = await devices_of(engine, patient["id"])
    response = await make_client(app.access_token).get(ME)
    body = response.json()
    assert body["role"] == "patient"
    assert body["scope"] == PATIENT_APP_SCOPE
    assert body["patient_id"] == patient["id"]
    assert body["device_id"] == str(device.id)
    assert body["client_id"] is None
    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=14) < lifetime <= timedelta(minutes=15)
    action, resource_type, resource_id, patient_id, outcome = await audited(engine, response)
    assert (action, resource_type, outcome) == ("read", "token", "allowed")
    assert patient_id == uuid.UUID(patient["id"])
    assert resource_id is not None  # the token's id


async def test_a_registered_clients_token(make_client: MakeClient, engine: AsyncEngine) -> None:
    """As SMART Backend Services issue it: scoped, naming its client."""
    client_id = uuid.uuid4()
    async with create_sessionmaker(engine)() as session, session.begin():
        await session.execute(
            insert(OAuthClient).values(
                id=client_id, name="EHR", role="integration", scope="system/*.rs",
                jwks={"keys": []}, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        issued = await TokenService(session).issue_scoped(
            role="integration",
            scope="system/*.rs",
            lifetime=timedelta(minutes=5),
            client_id=client_id,
        )
    body = await me(make_client(issued.token))
    assert (body["role"], body["scope"], body["client_id"]) == (
        "integration", "system/*.rs", str(client_id)
    )  # fmt: skip
    assert (body["patient_id"], body["device_id"]) == (None, None)


async def test_no_token_or_a_revoked_one_is_401(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, make_client: MakeClient
) -> None:
    assert_problem(await anonymous.get(ME), 401)
    issued = (await admin.post(f"{API}/tokens", json={"role": "dashboard"})).json()
    token = make_client(issued["token"])
    assert (await token.get(ME)).status_code == 200
    assert (await admin.delete(f"{API}/tokens/{issued['id']}")).status_code == 204
    assert_problem(await token.get(ME), 401)
