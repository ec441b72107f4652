"""Treatment courses: creation, phase, status changes, clinician frequency changes and history."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.courses.schedule import next_session_due, phase_for
from app.outbox.models import OutboxEvent
from tests.factories import API, create_course, create_patient, create_session
from tests.support import assert_problem

START = (date.today() - timedelta(days=10)).isoformat()


async def test_create_course_defaults(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    body = {
        "indication": "post-discectomy pain",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": START,
    }
    response = await client.post(f"{API}/patients/{patient['id']}/courses", json=body)
    assert response.status_code == 201
    course = response.json()
    assert course | body == course
    assert course["patient_id"] == patient["id"]
    assert course["status"] == "active"
    assert course["phase"] == "induction"
    assert course["sessions_per_week"] == 3
    assert course["adjustment"] == "auto"
    assert course["max_sessions"] is None
    assert course["sessions_done"] == 0
    assert course["next_session_due"] == START  # no session yet: the start date


async def test_course_at_two_a_week_starts_in_consolidation(client: httpx.AsyncClient) -> None:
    course = await create_course(client, sessions_per_week=2, adjustment="confirm", max_sessions=10)
    assert course["phase"] == "consolidation"
    assert course["adjustment"] == "confirm"
    assert course["max_sessions"] == 10


async def test_course_for_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/patients/{uuid.uuid4()}/courses",
        json={
            "indication": "x",
            "region": "lumbar",
            "technique": "paravertebral",
            "start_date": START,
        },
    )
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"technique": "intravenous"}, ["body", "technique"]),
        ({"indication": ""}, ["body", "indication"]),
        ({"start_date": "2026-13-01"}, ["body", "start_date"]),
        ({"start_date": "1999-12-31"}, ["body", "start_date"]),
        ({"sessions_per_week": 0}, ["body", "sessions_per_week"]),
        ({"sessions_per_week": 8}, ["body", "sessions_per_week"]),
        ({"adjustment": "manual"}, ["body", "adjustment"]),
        ({"max_sessions": 0}, ["body", "max_sessions"]),
        ({"status": "active"}, ["body", "status"]),
        ({"phase": "induction"}, ["body", "phase"]),
    ],
)
async def test_invalid_course_is_422_and_writes_nothing(
    client: httpx.AsyncClient, fields: dict[str, object], loc: list[str]
) -> None:
    patient = await create_patient(client)
    body = {
        "indication": "x",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": START,
    }
    response = await client.post(f"{API}/patients/{patient['id']}/courses", json=body | fields)
    assert_problem(response, 422, loc=loc)
    listing = (await client.get(f"{API}/patients/{patient['id']}/courses")).json()
    assert listing["items"] == []


async def test_missing_required_fields_are_each_named(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    body = assert_problem(
        await client.post(f"{API}/patients/{patient['id']}/courses", json={}), 422
    )
    locs = {tuple(e["loc"]) for e in body["errors"]}
    assert locs == {("body", f) for f in ("indication", "region", "technique", "start_date")}


async def test_get_and_list_courses(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    first = await create_course(client, patient["id"])
    second = await create_course(client, patient["id"], region="cervical")
    assert (await client.get(f"{API}/courses/{first['id']}")).json() == first
    listing = (await client.get(f"{API}/patients/{patient['id']}/courses")).json()
    assert [c["id"] for c in listing["items"]] == [first["id"], second["id"]]
    await client.patch(f"{API}/courses/{first['id']}", json={"status": "completed"})
    active = (
        await client.get(f"{API}/patients/{patient['id']}/courses", params={"status": "active"})
    ).json()
    assert [c["id"] for c in active["items"]] == [second["id"]]


async def test_unknown_course_is_404(client: httpx.AsyncClient) -> None:
    for path in ("", "/frequency-history", "/sessions"):
        assert_problem(await client.get(f"{API}/courses/{uuid.uuid4()}{path}"), 404)
    assert_problem(await client.patch(f"{API}/courses/{uuid.uuid4()}", json={"notes": "x"}), 404)
    response = await client.post(
        f"{API}/courses/{uuid.uuid4()}/frequency", json={"sessions_per_week": 2, "reason": "x"}
    )
    assert_problem(response, 404)


async def test_courses_of_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/patients/{uuid.uuid4()}/courses"), 404)


async def test_patch_status_and_notes(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    response = await client.patch(
        f"{API}/courses/{course['id']}", json={"status": "paused", "notes": "travel"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    assert response.json()["notes"] == "travel"
    assert response.json()["next_session_due"] is None  # nothing is due on a paused course
    resumed = await client.patch(f"{API}/courses/{course['id']}", json={"status": "active"})
    assert resumed.json()["status"] == "active"


@pytest.mark.parametrize("final", ["completed", "discontinued"])
async def test_final_status_cannot_be_left(client: httpx.AsyncClient, final: str) -> None:
    course = await create_course(client)
    await client.patch(f"{API}/courses/{course['id']}", json={"status": final})
    response = await client.patch(f"{API}/courses/{course['id']}", json={"status": "active"})
    assert_problem(response, 409)
    assert (await client.get(f"{API}/courses/{course['id']}")).json()["status"] == final


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"status": "finished"}, ["body", "status"]),
        ({"status": None}, ["body", "status"]),
        ({"sessions_per_week": 2}, ["body", "sessions_per_week"]),
        ({"phase": "maintenance"}, ["body", "phase"]),
    ],
)
async def test_patch_rejects_bad_fields(
    client: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    course = await create_course(client)
    assert_problem(await client.patch(f"{API}/courses/{course['id']}", json=body), 422, loc=loc)


async def test_new_course_has_an_initial_history_row(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    history = (await client.get(f"{API}/courses/{course['id']}/frequency-history")).json()
    assert len(history["items"]) == 1
    initial = history["items"][0]
    assert initial["source"] == "initial"
    assert initial["sessions_per_week"] == 3
    assert initial["phase"] == "induction"
    assert initial["rule"] is None
    assert initial["reason"]


async def test_clinician_frequency_change_updates_course_and_history(
    client: httpx.AsyncClient,
) -> None:
    course = await create_course(client)
    response = await client.post(
        f"{API}/courses/{course['id']}/frequency",
        json={"sessions_per_week": 2, "reason": "pain down from 7 to 4 after 6 sessions"},
    )
    assert response.status_code == 200
    assert response.json()["sessions_per_week"] == 2
    assert response.json()["phase"] == "consolidation"
    await client.post(
        f"{API}/courses/{course['id']}/frequency", json={"sessions_per_week": 1, "reason": "stable"}
    )
    history = (await client.get(f"{API}/courses/{course['id']}/frequency-history")).json()["items"]
    assert [(h["source"], h["sessions_per_week"], h["phase"]) for h in history] == [
        ("initial", 3, "induction"),
        ("clinician", 2, "consolidation"),
        ("clinician", 1, "maintenance"),
    ]
    assert history[1]["reason"] == "pain down from 7 to 4 after 6 sessions"
    assert history[0]["changed_at"] <= history[1]["changed_at"] <= history[2]["changed_at"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"sessions_per_week": 2}, ["body", "reason"]),
        ({"sessions_per_week": 0, "reason": "x"}, ["body", "sessions_per_week"]),
        ({"sessions_per_week": 2, "reason": ""}, ["body", "reason"]),
        ({"sessions_per_week": 2, "reason": "x", "source": "policy"}, ["body", "source"]),
    ],
)
async def test_invalid_frequency_change_is_422_and_writes_nothing(
    client: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    course = await create_course(client)
    assert_problem(
        await client.post(f"{API}/courses/{course['id']}/frequency", json=body), 422, loc=loc
    )
    history = (await client.get(f"{API}/courses/{course['id']}/frequency-history")).json()["items"]
    assert len(history) == 1


async def test_frequency_of_a_closed_course_cannot_change(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    await client.patch(f"{API}/courses/{course['id']}", json={"status": "discontinued"})
    response = await client.post(
        f"{API}/courses/{course['id']}/frequency", json={"sessions_per_week": 2, "reason": "x"}
    )
    assert_problem(response, 409)
    assert (
        len((await client.get(f"{API}/courses/{course['id']}/frequency-history")).json()["items"])
        == 1
    )


async def test_concurrent_frequency_changes_keep_history_events_and_course_in_one_order(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Clinicians' changes to one course at the same moment are applied one after the other:
    the history's order (its times) is the order the changes were made in, so each change's
    `previous` is the one before it, its event (the outbox, issue 17) comes in that order, and
    the course ends at the last change."""
    course = await create_course(client)
    url = f"{API}/courses/{course['id']}/frequency"
    answers = await asyncio.gather(
        *(
            client.post(url, json={"sessions_per_week": 1 + n % 7, "reason": f"change {n}"})
            for n in range(16)
        )
    )
    assert [a.status_code for a in answers] == [200] * 16
    history = (await client.get(f"{API}/courses/{course['id']}/frequency-history")).json()["items"]
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(
                select(OutboxEvent.payload)
                .where(OutboxEvent.type == "course.frequency_changed")
                .order_by(OutboxEvent.seq)
            )
        ).scalars()
        events = [json.loads(p)["data"] for p in payloads]
    changes = history[1:]  # after the initial prescription
    assert [e["sessions_per_week"] for e in events] == [h["sessions_per_week"] for h in changes]
    assert [e["previous_sessions_per_week"] for e in events] == [
        h["sessions_per_week"] for h in history[:-1]
    ]
    now = (await client.get(f"{API}/courses/{course['id']}")).json()
    assert now["sessions_per_week"] == history[-1]["sessions_per_week"]


async def test_next_session_due_follows_the_last_session(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    performed = datetime.now(UTC) - timedelta(days=1)
    await create_session(client, course["id"], performed_at=performed.isoformat())
    after = (await client.get(f"{API}/courses/{course['id']}")).json()
    assert after["sessions_done"] == 1
    # 3 a week: ⌊7/3⌋ = 2 days after the last session's date
    assert after["next_session_due"] == (performed.date() + timedelta(days=2)).isoformat()
    changed = await client.post(
        f"{API}/courses/{course['id']}/frequency", json={"sessions_per_week": 2, "reason": "x"}
    )
    assert changed.json()["next_session_due"] == (performed.date() + timedelta(days=3)).isoformat()


@pytest.mark.parametrize(("per_week", "days"), [(3, 2), (2, 3), (1, 7), (0.5, 14), (7, 1)])
def test_next_session_due_formula(per_week: float, days: int) -> None:
    last = datetime(2026, 3, 2, 18, 30, tzinfo=UTC)
    due = next_session_due(
        status="active",
        start_date=date(2026, 3, 1),
        last_session_at=last,
        sessions_per_week=per_week,
    )
    assert due == date(2026, 3, 2) + timedelta(days=days)


@pytest.mark.parametrize(
    ("per_week", "phase"),
    [
        (3, "induction"),
        (2, "consolidation"),
        (1, "maintenance"),
        (2.5, "consolidation"),
        (7, "induction"),
    ],
)
def test_phase_by_frequency(per_week: float, phase: str) -> None:
    assert phase_for(per_week) == phase
