"""Plain factory functions that create resources through the public API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

API = "/api/v1"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


async def create_patient(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/patients", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_course(
    client: httpx.AsyncClient, patient_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A course (on a new patient unless one is given); defaults to an active lumbar course."""
    if patient_id is None:
        patient_id = (await create_patient(client))["id"]
    body = {
        "indication": "lumbar muscle contracture",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": (datetime.now(UTC) - timedelta(days=14)).date().isoformat(),
    } | fields
    response = await client.post(f"{API}/patients/{patient_id}/courses", json=body)
    assert response.status_code == 201, response.text
    course: dict[str, Any] = response.json()
    return course


async def create_session(
    client: httpx.AsyncClient, course_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"performed_at": ago(hours=1)} | fields
    response = await client.post(f"{API}/courses/{course_id}/sessions", json=body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def create_observation(
    client: httpx.AsyncClient, patient_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"instrument": "pain-nrs", "value": 6, "recorded_at": ago(hours=1)} | fields
    response = await client.post(f"{API}/patients/{patient_id}/observations", json=body)
    assert response.status_code == 201, response.text
    observation: dict[str, Any] = response.json()
    return observation
