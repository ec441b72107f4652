"""Session logs: numbering within a course, validation, only on active courses."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.factories import API, ago, create_course, create_session
from tests.support import assert_problem, walk_pages


async def test_log_session_with_every_field(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    body = {
        "performed_at": ago(hours=2),
        "technique": "intramuscular",
        "sites": ["L4-L5 paravertebral left", "L4-L5 paravertebral right"],
        "ozone_concentration_ug_ml": 20,
        "volume_ml": 10.5,
        "injection_points": 4,
        "pain_before": 7,
        "pain_after": 4,
        "adverse_events": ["transient local pain"],
        "notes": "well tolerated",
    }
    response = await client.post(f"{API}/courses/{course['id']}/sessions", json=body)
    assert response.status_code == 201
    session = response.json()
    uuid.UUID(session["id"])
    assert session["number"] == 1
    assert session["course_id"] == course["id"]
    assert session["patient_id"] == course["patient_id"]
    assert {k: session[k] for k in body if k != "performed_at"} == {
        k: v for k, v in body.items() if k != "performed_at"
    }
    assert session["performed_at"].endswith("Z")


async def test_minimal_session_takes_the_course_technique(client: httpx.AsyncClient) -> None:
    course = await create_course(client, technique="intramuscular")
    session = await create_session(client, course["id"])
    assert session["technique"] == "intramuscular"
    assert session["sites"] == []
    assert session["adverse_events"] == []


async def test_sessions_are_numbered_within_their_course(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    other = await create_course(client)
    numbers = [
        (await create_session(client, course["id"], performed_at=ago(days=5 - i)))["number"]
        for i in range(3)
    ]
    assert numbers == [1, 2, 3]
    assert (await create_session(client, other["id"]))["number"] == 1
    assert (await client.get(f"{API}/courses/{course['id']}")).json()["sessions_done"] == 3


async def test_concurrent_sessions_get_distinct_numbers(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/courses/{course['id']}/sessions", json={"performed_at": ago(hours=i + 1)}
            )
            for i in range(8)
        )
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["number"] for r in responses) == list(range(1, 9))
    assert (await client.get(f"{API}/courses/{course['id']}")).json()["sessions_done"] == 8


@pytest.mark.parametrize("status", ["paused", "completed", "discontinued"])
async def test_session_on_a_course_that_is_not_active_is_409(
    client: httpx.AsyncClient, status: str
) -> None:
    course = await create_course(client)
    await client.patch(f"{API}/courses/{course['id']}", json={"status": status})
    response = await client.post(
        f"{API}/courses/{course['id']}/sessions", json={"performed_at": ago(hours=1)}
    )
    assert_problem(response, 409)
    assert (await client.get(f"{API}/courses/{course['id']}/sessions")).json()["items"] == []
    assert (await client.get(f"{API}/courses/{course['id']}")).json()["sessions_done"] == 0


async def test_session_on_unknown_course_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/courses/{uuid.uuid4()}/sessions", json={"performed_at": ago(hours=1)}
    )
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"performed_at": "2026-01-05T10:00:00"}, ["body", "performed_at"]),  # naive
        ({"performed_at": "yesterday"}, ["body", "performed_at"]),
        ({"performed_at": None}, ["body", "performed_at"]),
        ({"ozone_concentration_ug_ml": 0.5}, ["body", "ozone_concentration_ug_ml"]),
        ({"ozone_concentration_ug_ml": 81}, ["body", "ozone_concentration_ug_ml"]),
        ({"volume_ml": -1}, ["body", "volume_ml"]),
        ({"volume_ml": 50.5}, ["body", "volume_ml"]),
        ({"injection_points": 0}, ["body", "injection_points"]),
        ({"injection_points": 51}, ["body", "injection_points"]),
        ({"injection_points": 2.5}, ["body", "injection_points"]),
        ({"pain_before": 11}, ["body", "pain_before"]),
        ({"pain_after": -1}, ["body", "pain_after"]),
        ({"pain_after": 3.5}, ["body", "pain_after"]),
        ({"sites": "L4"}, ["body", "sites"]),
        ({"sites": [""]}, ["body", "sites", 0]),
        ({"adverse_events": [1]}, ["body", "adverse_events", 0]),
        ({"number": 7}, ["body", "number"]),
    ],
)
async def test_invalid_session_is_422_and_writes_nothing(
    client: httpx.AsyncClient, fields: dict[str, object], loc: list[object]
) -> None:
    course = await create_course(client)
    body = {"performed_at": ago(hours=1)} | fields
    assert_problem(
        await client.post(f"{API}/courses/{course['id']}/sessions", json=body), 422, loc=loc
    )
    assert (await client.get(f"{API}/courses/{course['id']}/sessions")).json()["items"] == []
    assert (await client.get(f"{API}/courses/{course['id']}")).json()["sessions_done"] == 0


@pytest.mark.parametrize(("minutes", "status"), [(10, 422), (3, 201)])
async def test_future_performed_at_tolerates_five_minutes(
    client: httpx.AsyncClient, minutes: int, status: int
) -> None:
    course = await create_course(client)
    when = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
    response = await client.post(
        f"{API}/courses/{course['id']}/sessions", json={"performed_at": when}
    )
    assert response.status_code == status, response.text


async def test_offset_timestamps_are_stored_in_utc(client: httpx.AsyncClient) -> None:
    course = await create_course(client, start_date="2026-01-01")
    session = await create_session(client, course["id"], performed_at="2026-01-05T10:00:00-03:00")
    assert session["performed_at"] == "2026-01-05T13:00:00Z"


async def test_session_before_the_course_start_is_422(client: httpx.AsyncClient) -> None:
    start = datetime.now(UTC).date() - timedelta(days=3)
    course = await create_course(client, start_date=start.isoformat())
    response = await client.post(
        f"{API}/courses/{course['id']}/sessions", json={"performed_at": ago(days=10)}
    )
    assert_problem(response, 422, loc=["body", "performed_at"])


async def test_sessions_list_oldest_first_across_pages(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    # logged out of order: the list follows performed_at, not the logging order
    days = [3, 9, 1, 7, 5, 2, 8]
    for d in days:
        await create_session(client, course["id"], performed_at=ago(days=d))
    pages = await walk_pages(client, f"{API}/courses/{course['id']}/sessions", 3)
    seen = [s["performed_at"] for page in pages for s in page]
    assert len(pages) == 3
    assert len(seen) == len(days)
    assert seen == sorted(seen)
