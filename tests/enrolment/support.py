"""What the enrolment tests share: a clinician's code, an app exchanging it, the token
endpoint's answers, and the stored rows behind them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import table_of
from app.enrolment.models import Device, EnrolmentCode, RefreshToken
from tests.factories import API

TOKEN_URL = "/oauth/token"
ENROLMENT_GRANT = "urn:outcomes:grant-type:enrolment-code"
PATIENT_APP_SCOPE = "patient/*.rs patient/Observation.c"
INVALID_GRANT = "The code or refresh token is not valid, has expired or has been used."


async def new_code(staff: httpx.AsyncClient, patient_id: str, **body: Any) -> dict[str, Any]:
    """A clinician's enrolment code for the patient (`id`, `code`, `expires_at`, `uri`)."""
    response = await staff.post(f"{API}/patients/{patient_id}/enrolments", json=body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def token_request(app: httpx.AsyncClient, **form: str) -> httpx.Response:
    """A form-encoded request to the token endpoint, as an OAuth client sends it."""
    return await app.post(TOKEN_URL, data=form)


async def exchange(
    app: httpx.AsyncClient, code: str, device_name: str = "Ana's phone"
) -> httpx.Response:
    return await token_request(app, grant_type=ENROLMENT_GRANT, code=code, device_name=device_name)


async def refresh(app: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await token_request(app, grant_type="refresh_token", refresh_token=refresh_token)


@dataclass
class Enrolled:
    """An app that exchanged a code: its tokens and what it was told."""

    patient_id: str
    access_token: str
    refresh_token: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def enrol(
    staff: httpx.AsyncClient, app: httpx.AsyncClient, patient_id: str, device_name: str = "phone"
) -> Enrolled:
    """A code made by staff, exchanged by the app: the app's first pair of tokens."""
    code = (await new_code(staff, patient_id))["code"]
    response = await exchange(app, code, device_name)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return Enrolled(patient_id, body["access_token"], body["refresh_token"], body)


def assert_token_answer(response: httpx.Response, patient_id: str) -> dict[str, Any]:
    """An RFC 6749 §5.1 answer for a patient app, never cached."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert set(body) == {
        "access_token", "token_type", "refresh_token", "expires_in", "scope", "patient"
    }  # fmt: skip
    assert body["token_type"] == "bearer"
    assert body["scope"] == PATIENT_APP_SCOPE
    assert body["patient"] == patient_id
    assert body["access_token"].startswith("otk_")
    assert body["refresh_token"].startswith("ort_")
    assert body["expires_in"] == 900
    return body


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> dict[str, Any]:
    """An RFC 6749 §5.2 error, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body["error_description"]
    return body


def assert_invalid_grant(response: httpx.Response) -> None:
    """The one answer for every code or refresh token that will not do, whatever the reason."""
    body = assert_oauth_error(response, "invalid_grant")
    assert body == {"error": "invalid_grant", "error_description": INVALID_GRANT}


# --- the stored rows ---------------------------------------------------------------------


async def code_row(engine: AsyncEngine, code_id: str) -> EnrolmentCode:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(table_of(EnrolmentCode)).where(EnrolmentCode.id == uuid.UUID(code_id))
            )
        ).one()
    return EnrolmentCode(**row._mapping)


async def devices_of(engine: AsyncEngine, patient_id: str) -> list[Device]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(table_of(Device))
                .where(Device.patient_id == uuid.UUID(patient_id))
                .order_by(Device.created_at)
            )
        ).all()
    return [Device(**row._mapping) for row in rows]


async def refresh_rows(engine: AsyncEngine, device_id: uuid.UUID) -> list[RefreshToken]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(table_of(RefreshToken))
                .where(RefreshToken.device_id == device_id)
                .order_by(RefreshToken.created_at)
            )
        ).all()
    return [RefreshToken(**row._mapping) for row in rows]


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


async def set_code(engine: AsyncEngine, code_id: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(EnrolmentCode).where(EnrolmentCode.id == uuid.UUID(code_id)).values(**values)
        )


async def expire_refresh_tokens(engine: AsyncEngine, device_id: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(RefreshToken)
            .where(RefreshToken.device_id == device_id)
            .values(expires_at=ago(seconds=1))
        )
