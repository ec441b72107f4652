"""Policy scenarios through the HTTP API, for tests/analytics/test_policy_scenarios.py and any
other test that needs a course with a known history.

A scenario creates a course that started ``start_days_ago`` days ago (its initial history row is
dated to the start date, as if it had been prescribed then), logs its sessions first (no value
after a baseline yet: nothing to decide), then posts all pain scores in ONE batch, so exactly
one evaluation happens. Days are "days ago", measured on the server's real clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.courses.models import FrequencyChange
from tests.factories import API, ago, create_patient

Values = Sequence[tuple[float, float]]  # (days ago, value)

# pain-nrs (MCID 2 points, remission ≤ 2). The baseline is recorded 19 days ago, before the first
# session (18 days ago); "current" is the median of the last three values.
RESPONDER: Values = [(19, 8), (10, 5), (8, 4), (6, 4), (5, 4)]  # 8 → 4: 4 points, 50%
REMISSION: Values = [(19, 8), (10, 4), (8, 2), (6, 2), (5, 1)]  # 8 → 2: 75%, within remission
PARTIAL: Values = [(19, 10), (10, 7), (8, 6), (6, 6), (5, 6)]  # 10 → 6: 4 points, 40%
NON_RESPONDER: Values = [(19, 6), (10, 6), (8, 5), (6, 5), (5, 5)]  # 6 → 5: 1 point
WORSENING: Values = [(19, 4), (10, 6), (8, 7), (6, 7), (5, 7)]  # 4 → 7: −3 points

THREE_SESSIONS = (18, 16, 14)
SEVEN_DAYS = timedelta(days=7)


@dataclass(frozen=True)
class Case:
    patient_id: str
    course_id: str


def sessions_days(n: int) -> list[float]:
    """``n`` session days, every other day from 18 days ago (one a day from the 9th)."""
    days = [18.0, 16.0, 14.0, 12.0, 11.5, 11.0, 9.5, 9.0, 4.0, 3.0]
    return days[:n]


async def scenario(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    *,
    start_days_ago: int = 20,
    sessions: Sequence[float] = THREE_SESSIONS,
    values: Values = (),
    instrument: str = "pain-nrs",
    patient_id: str | None = None,
    **course_fields: Any,
) -> Case:
    if patient_id is None:
        patient_id = (await create_patient(client))["id"]
    start_date = (datetime.now(UTC) - timedelta(days=start_days_ago)).date()
    body = {
        "indication": "lumbar muscle contracture",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": start_date.isoformat(),
        "policy": "standard-v1",  # these scenarios are v1's table; standard-v2's have their own
    } | course_fields
    response = await client.post(f"{API}/patients/{patient_id}/courses", json=body)
    assert response.status_code == 201, response.text
    case = Case(patient_id, response.json()["id"])
    await backdate(engine, case, "initial", datetime.combine(start_date, time.min, tzinfo=UTC))
    for day in sessions:
        await log_session(client, case, days_ago=day)
    if values:
        await record(client, case, values, instrument=instrument)
    return case


async def log_session(
    client: httpx.AsyncClient, case: Case, *, days_ago: float, **fields: Any
) -> dict[str, Any]:
    body = {"performed_at": ago(days=days_ago)} | fields
    response = await client.post(f"{API}/courses/{case.course_id}/sessions", json=body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def record(
    client: httpx.AsyncClient,
    case: Case,
    values: Values,
    *,
    instrument: str = "pain-nrs",
    named: bool = False,
) -> None:
    """All ``values`` in one batch request: one policy evaluation. ``named``: each names the
    case's course (else each is attributed to the one course it fits)."""
    batch = [
        {"instrument": instrument, "value": value, "recorded_at": ago(days=days)}
        | ({"course_id": case.course_id} if named else {})
        for days, value in values
    ]
    response = await client.post(
        f"{API}/patients/{case.patient_id}/observations/batch", json={"observations": batch}
    )
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"created"}, response.text


async def record_one(client: httpx.AsyncClient, case: Case, value: float, **fields: Any) -> None:
    """One more pain score, just now: a recording request that evaluates the policy."""
    body = {"instrument": "pain-nrs", "value": value, "recorded_at": ago(seconds=1)} | fields
    response = await client.post(f"{API}/patients/{case.patient_id}/observations", json=body)
    assert response.status_code == 201, response.text


async def backdate(engine: AsyncEngine, case: Case, source: str, when: datetime) -> None:
    """Move the course's (only) history row of ``source`` to ``when``."""
    stmt = (
        update(FrequencyChange)
        .where(
            FrequencyChange.course_id == uuid.UUID(case.course_id),
            FrequencyChange.source == source,
        )
        .values(changed_at=when)
    )
    async with engine.begin() as conn:
        result = await conn.execute(stmt)
    assert result.rowcount == 1


async def get_course(client: httpx.AsyncClient, case: Case) -> dict[str, Any]:
    response = await client.get(f"{API}/courses/{case.course_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def history(client: httpx.AsyncClient, case: Case) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/courses/{case.course_id}/frequency-history")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    assert all(item["reason"] for item in items)
    return items


async def recommendation(client: httpx.AsyncClient, case: Case) -> dict[str, Any]:
    response = await client.get(f"{API}/courses/{case.course_id}/recommendation")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["course_id"] == case.course_id
    assert body["policy_version"] in ("standard-v1", "standard-v2")
    assert body["rationale"]
    return body


async def assert_frequency(
    client: httpx.AsyncClient, case: Case, sessions_per_week: float, phase: str
) -> None:
    course = await get_course(client, case)
    assert (course["sessions_per_week"], course["phase"]) == (sessions_per_week, phase)


async def assert_stepped_down_once(client: httpx.AsyncClient, case: Case) -> None:
    """The responder scenario's second step (2 → 1 a week) was applied once, by the policy."""
    await assert_frequency(client, case, 1, "maintenance")
    rows = await history(client, case)
    assert [(r["source"], r["sessions_per_week"]) for r in rows] == [
        ("initial", 3),
        ("policy", 2),
        ("policy", 1),
    ]


async def assert_unchanged(client: httpx.AsyncClient, case: Case) -> None:
    """Still at its initial 3 a week, with nothing but the initial row in its history."""
    await assert_frequency(client, case, 3, "induction")
    assert [row["source"] for row in await history(client, case)] == ["initial"]


async def trends(
    client: httpx.AsyncClient, case: Case, instrument: str | None = None
) -> dict[str, Any]:
    params = {"instrument": instrument} if instrument else {}
    response = await client.get(f"{API}/patients/{case.patient_id}/trends", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def moment(delta: timedelta) -> datetime:
    """``delta`` ago, on the real clock."""
    return datetime.now(UTC) - delta
