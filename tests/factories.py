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
