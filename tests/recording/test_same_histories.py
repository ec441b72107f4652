"""A property of the one pipeline: the same recordings give the same frequency history on
every store. Random sequences of single POSTs, batches and sessions (seeded, so a failure
reproduces) are sent for two patients alike, one's with an Idempotency-Key (the session
store), the other's without (the plain pool on PostgreSQL; the session store on SQLite)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.analytics.support import Case, backdate, history
from tests.factories import API, ago, create_patient

Step = tuple[str, Any]


def _steps(seed: int) -> list[Step]:
    """A course's recordings over 20 days, oldest first: scores drift down, flat or up at a
    seeded rate, with noise, ties and late arrivals."""
    rng = random.Random(seed)
    drift = rng.choice([-0.5, -0.3, 0.0, 0.2])
    level = rng.uniform(6, 9)
    steps: list[Step] = []
    day = 21.0
    while day > 0.1:
        day -= rng.uniform(0.3, 2.0)
        kind = rng.choices(["one", "batch", "session"], [5, 2, 2])[0]
        if kind == "session":
            steps.append(("session", max(day, 0.05)))
            continue
        count = 1 if kind == "one" else rng.randint(2, 4)
        values = []
        for _ in range(count):
            level = min(10.0, max(0.0, level + drift + rng.uniform(-0.8, 0.8)))
            when = max(day - rng.choice([0.0, 0.0, 0.2, 1.5]), 0.01)  # some arrive late
            values.append((when, float(round(level))))
        steps.append((kind, values))
    return steps


async def _course(client: httpx.AsyncClient, engine: AsyncEngine) -> Case:
    patient = await create_patient(client)
    start = (datetime.now(UTC) - timedelta(days=21)).date()
    body = {
        "indication": "lumbar muscle contracture",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": start.isoformat(),
    }
    response = await client.post(f"{API}/patients/{patient['id']}/courses", json=body)
    assert response.status_code == 201, response.text
    case = Case(patient["id"], response.json()["id"])
    await backdate(engine, case, "initial", datetime.combine(start, time.min, tzinfo=UTC))
    return case


async def _run(client: httpx.AsyncClient, case: Case, steps: list[Step], keyed: bool) -> None:
    def headers() -> dict[str, str]:
        return {"Idempotency-Key": str(uuid.uuid4())} if keyed else {}

    observations = f"{API}/patients/{case.patient_id}/observations"
    for kind, payload in steps:
        if kind == "session":
            url = f"{API}/courses/{case.course_id}/sessions"
            response = await client.post(url, json={"performed_at": ago(days=payload)})
            if response.status_code == 409:  # the policy closed the course meanwhile
                continue
            assert response.status_code == 201, response.text
            continue
        items = [
            {"instrument": "pain-nrs", "value": value, "recorded_at": ago(days=days)}
            for days, value in payload
        ]
        if kind == "one":
            response = await client.post(observations, json=items[0], headers=headers())
            assert response.status_code == 201, response.text
        else:
            body = {"observations": items}
            response = await client.post(f"{observations}/batch", json=body, headers=headers())
            assert response.status_code == 200, response.text


def _decisions(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["source"], r["rule"], r["sessions_per_week"], r["phase"]) for r in rows]


@pytest.mark.parametrize("seed", range(8))
async def test_the_same_recordings_give_the_same_history_on_every_store(
    client: httpx.AsyncClient, engine: AsyncEngine, seed: int
) -> None:
    steps = _steps(seed)
    keyed, plain = await _course(client, engine), await _course(client, engine)

    await _run(client, keyed, steps, keyed=True)
    await _run(client, plain, steps, keyed=False)

    keyed_history = _decisions(await history(client, keyed))
    assert keyed_history == _decisions(await history(client, plain))
    assert keyed_history[0][0] == "initial"
