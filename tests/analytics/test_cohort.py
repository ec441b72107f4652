"""Cohort summary for dashboards, on a cohort whose answers are known by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.analytics.cohort import CourseOutcome, summarise
from tests.factories import API, create_course, create_patient, create_session
from tests.support import assert_problem

TODAY = datetime.now(UTC).date()


def at(days_after_start: float, start_days_ago: int) -> str:
    start = datetime.combine(
        TODAY - timedelta(days=start_days_ago), datetime.min.time(), tzinfo=UTC
    )
    return (start + timedelta(days=days_after_start, hours=10)).isoformat()


async def course_with(
    client: httpx.AsyncClient,
    values: list[tuple[float, float]],
    *,
    start_days_ago: int = 20,
    indication: str = "spondylosis",
    technique: str = "paravertebral",
) -> dict[str, Any]:
    """A confirm course (the policy changes nothing) with one session on day 0 and pain scores
    on the given days after the start (negative days are baseline)."""
    patient = await create_patient(client)
    course = await create_course(
        client, patient["id"], indication=indication, technique=technique, adjustment="confirm",
        start_date=(TODAY - timedelta(days=start_days_ago)).isoformat(),
    )  # fmt: skip
    await create_session(client, course["id"], performed_at=at(0, start_days_ago))
    batch = [
        {"instrument": "pain-nrs", "value": v, "recorded_at": at(d, start_days_ago)}
        for d, v in values
    ]
    if batch:
        response = await client.post(
            f"{API}/patients/{patient['id']}/observations/batch", json={"observations": batch}
        )
        assert response.status_code == 200
    return course


@pytest.fixture
async def cohort(client: httpx.AsyncClient) -> None:
    # baseline 8 everywhere (recorded the day before the start); week 1 = days 0–6, week 2 = 7–13
    await course_with(client, [(-1, 8), (2, 6), (4, 6), (8, 4), (10, 4)])  # responder: 8→4 50%
    await course_with(client, [(-1, 8), (2, 6), (4, 6), (8, 5), (10, 5)])  # partial: 8→5 37.5%
    await course_with(client, [(-1, 8), (2, 8), (4, 8), (8, 7), (10, 7)])  # non-responder
    await course_with(client, [(-1, 8), (2, 8)])  # 2 values: insufficient data
    await course_with(
        client, [(-1, 8), (2, 7), (8, 5), (10, 5)], technique="intramuscular"
    )  # partial
    await course_with(client, [(-1, 5), (2, 5), (9, 7), (11, 7)], indication="post-discectomy pain")


async def test_counts_by_status_and_responder_rate(client: httpx.AsyncClient, cohort: None) -> None:
    summary = (await client.get(f"{API}/cohort/summary")).json()
    assert summary["courses"] == 6
    assert summary["by_status"] == {
        "normal": 0,
        "responder": 1,
        "partial-responder": 2,
        "non-responder": 1,
        "worsening": 1,
        "insufficient-data": 1,
    }
    # responders + partial responders over courses with enough data: 3 of 5
    assert summary["responder_rate"] == pytest.approx(3 / 5)


async def test_mean_improvement_by_week_of_course(client: httpx.AsyncClient, cohort: None) -> None:
    summary = (
        await client.get(f"{API}/cohort/summary", params={"indication": "spondylosis"})
    ).json()
    weeks = {w["week"]: w for w in summary["improvement_by_week"]}
    # week 1 medians: 6, 6, 8, 8, 7 against baseline 8 → 25, 25, 0, 0, 12.5 %
    assert weeks[1]["n"] == 5
    assert weeks[1]["mean_improvement_pct"] == pytest.approx((25 + 25 + 0 + 0 + 12.5) / 5)
    # week 2 medians: 4, 5, 7, 5 → 50, 37.5, 12.5, 37.5 %
    assert weeks[2]["n"] == 4
    assert weeks[2]["mean_improvement_pct"] == pytest.approx((50 + 37.5 + 12.5 + 37.5) / 4)
    assert sorted(weeks) == [1, 2]


async def test_filters(client: httpx.AsyncClient, cohort: None) -> None:
    async def count(**params: str) -> int:
        response = await client.get(f"{API}/cohort/summary", params=params)
        assert response.status_code == 200, response.text
        courses: int = response.json()["courses"]
        return courses

    assert await count(indication="Spondylosis") == 5  # case-insensitive
    assert await count(indication="post-discectomy pain") == 1
    assert await count(technique="intramuscular") == 1
    start = (TODAY - timedelta(days=20)).isoformat()
    assert await count(since=start, until=start) == 6
    assert await count(since=(TODAY - timedelta(days=19)).isoformat()) == 0


async def test_empty_cohort(client: httpx.AsyncClient) -> None:
    summary = (await client.get(f"{API}/cohort/summary")).json()
    assert summary == {
        "courses": 0,
        "by_status": {
            s: 0
            for s in (
                "normal",
                "responder",
                "partial-responder",
                "non-responder",
                "worsening",
                "insufficient-data",
            )
        },
        "responder_rate": None,
        "improvement_by_week": [],
    }


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"technique": "oral"}, ["query", "technique"]),
        ({"since": "yesterday"}, ["query", "since"]),
        ({"until": "2026-02-30"}, ["query", "until"]),
    ],
)
async def test_bad_filters_are_422(
    client: httpx.AsyncClient, params: dict[str, str], loc: list[str]
) -> None:
    assert_problem(await client.get(f"{API}/cohort/summary", params=params), 422, loc=loc)


def test_summarise_without_enough_data_has_no_rate() -> None:
    summary = summarise([CourseOutcome("insufficient-data", {})])
    assert summary.responder_rate is None
    assert summary.courses == 1
