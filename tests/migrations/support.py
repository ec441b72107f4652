"""Scratch databases for migration tests: a file on SQLite, a database of its own on
PostgreSQL (dropped by the caller with the admin engine returned)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.config import to_async_url

NOW = datetime.now(UTC)


async def scratch_database(database_url: str, tmp_path_str: str) -> tuple[str, AsyncEngine | None]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path_str}/scratch-{uuid.uuid4().hex[:8]}.db", None
    name = f"outcomes_rt_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(to_async_url(database_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    return url.set(database=name).render_as_string(hide_password=False), admin


async def drop_scratch(scratch: str, admin: AsyncEngine | None) -> None:
    if admin is None:
        return
    async with admin.connect() as conn:
        name = make_url(scratch).database
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


def course_row(
    course_id: uuid.UUID, patient_id: uuid.UUID, region: str, start: date, status: str
) -> dict[str, Any]:
    """A course row as versions 0005 to 0010 store it."""
    return {
        "id": course_id,
        "patient_id": patient_id,
        "indication": "spine pain",
        "region": region,
        "technique": "paravertebral",
        "start_date": start,
        "sessions_per_week": 3,
        "adjustment": "auto",
        "status": status,
        "phase": "induction",
        "sessions_done": 0,
        "policy": "standard-v1",
        "created_at": NOW,
        "updated_at": NOW - timedelta(days=2) if status == "completed" else NOW,
    }
