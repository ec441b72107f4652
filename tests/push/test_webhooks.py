"""Webhooks end to end: a real receiver on a loopback port, the dispatcher running in the app,
signatures verified with the Standard Webhooks library (issue 17)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from app.core.config import Settings
from app.outbox.models import OutboxEvent
from tests.factories import API, ago, create_course, create_patient
from tests.push.receiver import FAST, Received, Receiver, always, receiving
from tests.support import Issue, assert_problem, client_of, running


@dataclass
class Push:
    app: FastAPI
    admin: httpx.AsyncClient
    clinician: httpx.AsyncClient


@pytest.fixture
async def push(settings: Settings, engine: AsyncEngine, issue_token: Issue) -> AsyncIterator[Push]:
    """An app whose dispatcher runs, with an admin and a clinician."""
    async with running(settings, **FAST) as app:
        admin = client_of(app, await issue_token("admin"))
        clinician = client_of(app, await issue_token("clinician"))
        yield Push(app, admin, clinician)
        await admin.aclose()
        await clinician.aclose()


async def subscribe(push: Push, receiver: Receiver, *events: str) -> dict[str, Any]:
    response = await push.admin.post(
        f"{API}/webhooks",
        json={"url": receiver.url, "events": list(events) or ["course.frequency_changed"]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload, verified as a receiver would with the standard library."""
    result: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return result


async def settled(push: Push, hook_id: str, status: str = "delivered") -> list[dict[str, Any]]:
    """The webhook's deliveries, once every one has ``status`` (10 s at most)."""
    for _ in range(100):
        items: list[dict[str, Any]] = (
            await push.admin.get(f"{API}/webhooks/{hook_id}/deliveries")
        ).json()["items"]
        if items and all(d["status"] == status for d in items):
            return items
        await asyncio.sleep(0.1)
    raise AssertionError(f"deliveries not {status}: {items}")


async def change_frequency(push: Push, course_id: str, per_week: int) -> None:
    response = await push.clinician.post(
        f"{API}/courses/{course_id}/frequency",
        json={"sessions_per_week": per_week, "reason": "private clinical note"},
    )
    assert response.status_code == 200, response.text


async def test_a_frequency_change_arrives_signed_and_verifies(push: Push) -> None:
    async with receiving(always(204)) as receiver:
        hook = await subscribe(push, receiver)
        assert hook["secret"].startswith("whsec_")
        course = await create_course(push.clinician)
        await change_frequency(push, course["id"], 2)
        await receiver.wait_for(lambda r: len(r.accepted()) == 1)

    request = receiver.received[0]
    body = verified(hook["secret"], request)
    assert request.headers["webhook-id"] == body["id"]
    assert request.headers["content-type"] == "application/json"
    assert body["type"] == "course.frequency_changed"
    assert body["occurred_at"].endswith("Z")
    data = body["data"]
    assert data["course_id"] == course["id"]
    assert data["patient_id"] == course["patient_id"]
    assert (data["sessions_per_week"], data["previous_sessions_per_week"]) == (2, 3)
    assert data["source"] == "clinician"
    assert "private clinical note" not in request.body.decode()  # no free text
    with pytest.raises(Exception):  # noqa: B017, PT011 (any verification error)
        Webhook(hook["secret"]).verify(request.body + b" ", request.headers)


async def test_a_receiver_that_fails_at_first_gets_the_event_later_with_the_same_id(
    push: Push,
) -> None:
    answers = iter([503, 500, 200])
    async with receiving(lambda _r: next(answers, 200)) as receiver:
        hook = await subscribe(push, receiver)
        course = await create_course(push.clinician)
        await change_frequency(push, course["id"], 2)
        await receiver.wait_for(lambda r: len(r.accepted()) == 1)

    assert [r.status for r in receiver.received] == [503, 500, 200]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    for request in receiver.received:
        verified(hook["secret"], request)
    [delivery] = await settled(push, hook["id"])
    assert delivery["attempts"] == 3
    assert delivery["last_status"] == 200
    assert delivery["event_id"] == receiver.received[0].headers["webhook-id"]


async def test_a_receiver_down_past_the_window_ends_failed_and_resend_delivers(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    up = False
    async with (
        receiving(lambda _r: 200 if up else 503) as receiver,
        running(settings, **(FAST | {"push_retry_window_hours": 1 / 3600})) as app,
        client_of(app, await issue_token("admin")) as admin,
        client_of(app, await issue_token("clinician")) as clinician,
    ):
        push = Push(app, admin, clinician)
        hook = await subscribe(push, receiver)
        course = await create_course(clinician)
        await change_frequency(push, course["id"], 2)
        deliveries = f"{API}/webhooks/{hook['id']}/deliveries"
        for _ in range(100):
            failed = (await admin.get(deliveries, params={"status": "failed"})).json()["items"]
            if failed:
                break
            await asyncio.sleep(0.1)
        [delivery] = failed
        assert delivery["attempts"] >= 2
        assert delivery["last_status"] == 503
        assert delivery["last_error"] == "HTTP 503"
        assert delivery["next_attempt_at"] is None
        assert (await admin.get(deliveries, params={"status": "pending"})).json()["items"] == []

        up = True
        resent = await admin.post(f"{deliveries}/{delivery['id']}/resend")
        assert resent.status_code == 202, resent.text
        assert resent.json()["status"] == "pending"
        await receiver.wait_for(lambda r: len(r.accepted()) == 1)
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert ids == {delivery["event_id"]}
        [now] = await settled(push, hook["id"])
        assert now["attempts"] == delivery["attempts"] + 1
        missing = await admin.post(f"{deliveries}/{hook['id']}/resend")
        assert_problem(missing, 404)


async def test_order_per_course_holds_under_concurrent_changes_and_a_flaky_receiver(
    push: Push,
) -> None:
    rng = random.Random(17)
    async with receiving(lambda _r: 500 if rng.random() < 0.3 else 200) as receiver:
        hook = await subscribe(push, receiver, "course.frequency_changed", "observation.created")
        courses = [await create_course(push.clinician) for _ in range(3)]

        async def changes(course_id: str) -> None:
            for n in range(6):
                await change_frequency(push, course_id, 1 + n % 7)

        async def values(patient_id: str, course_id: str) -> None:
            for n in range(4):
                response = await push.clinician.post(
                    f"{API}/patients/{patient_id}/observations",
                    json={
                        "instrument": "odi",
                        "value": 40 + n,
                        "recorded_at": "2026-01-01T08:00:00Z",
                        "course_id": course_id,
                    },
                )
                assert response.status_code == 201, response.text

        await asyncio.gather(
            *(changes(c["id"]) for c in courses),
            *(values(c["patient_id"], c["id"]) for c in courses),
        )
        expected = 3 * 6 + 3 * 4
        await receiver.wait_for(lambda r: len(r.accepted()) >= expected, within_s=60)

    bodies = [verified(hook["secret"], r) for r in receiver.accepted()]
    assert len({b["id"] for b in bodies}) == expected  # each once (no duplicate acked here)
    for course in courses:
        history = await push.clinician.get(f"{API}/courses/{course['id']}/frequency-history")
        clinician_rows = [h for h in history.json()["items"] if h["source"] == "clinician"]
        arrived = [
            b["data"]["sessions_per_week"]
            for b in bodies
            if b["type"] == "course.frequency_changed" and b["data"]["course_id"] == course["id"]
        ]
        assert arrived == [h["sessions_per_week"] for h in clinician_rows]


async def test_redirects_are_failed_attempts_and_urls_are_checked(push: Push) -> None:
    async with receiving(always(302)) as receiver:
        hook = await subscribe(push, receiver)
        course = await create_course(push.clinician)
        await change_frequency(push, course["id"], 2)
        await receiver.wait_for(lambda r: len(r.received) >= 2)
        [delivery] = (await push.admin.get(f"{API}/webhooks/{hook['id']}/deliveries")).json()[
            "items"
        ]
        assert delivery["status"] == "pending"
        assert delivery["last_status"] == 302
        assert "redirects are not followed" in delivery["last_error"]

    for url in ("http://example.com/hook", "ftp://127.0.0.1/x", "https://user:pw@h.example/x"):
        refused = await push.admin.post(
            f"{API}/webhooks", json={"url": url, "events": ["observation.created"]}
        )
        assert_problem(refused, 422, loc=["body", "url"])
    unknown = await push.admin.post(
        f"{API}/webhooks", json={"url": "https://h.example/x", "events": ["course.deleted"]}
    )
    assert_problem(unknown, 422)
    listed = (await push.admin.get(f"{API}/webhooks")).json()["items"]
    assert [w["id"] for w in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert (await push.admin.delete(f"{API}/webhooks/{hook['id']}")).status_code == 204
    assert_problem(await push.admin.delete(f"{API}/webhooks/{hook['id']}"), 404)
    assert (await push.admin.get(f"{API}/webhooks")).json()["items"] == []


async def test_events_exist_iff_their_change_committed_on_every_recording_path(
    push: Push, engine: AsyncEngine
) -> None:
    """A single POST, a batch, a replay (no new event) and a refused write (none)."""
    patient = await create_patient(push.clinician)
    course = await create_course(push.clinician, patient["id"])
    observation = {
        "id": "6f1c33a2-5d0f-4d38-9c55-6c8d8b1b0a01",
        "instrument": "odi",
        "value": 44,
        "recorded_at": ago(hours=2),
        "note": "free text that never leaves",
    }
    url = f"{API}/patients/{patient['id']}/observations"
    assert (await push.clinician.post(url, json=observation)).status_code == 201
    assert (await push.clinician.post(url, json=observation)).status_code == 200  # a replay
    conflict = await push.clinician.post(url, json=observation | {"value": 45})
    assert conflict.status_code == 409
    batch = {"observations": [observation | {"id": None, "value": v} for v in (30, 31)]}
    batch["observations"].append(observation)  # a duplicate inside the batch: no event
    assert (await push.clinician.post(f"{url}/batch", json=batch)).status_code == 200
    with_key = await push.clinician.post(
        url, json=observation | {"id": None, "value": 20}, headers={"Idempotency-Key": "k-1"}
    )
    assert with_key.status_code == 201

    async with engine.connect() as conn:
        rows = (await conn.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).all()
    created = [json.loads(r.payload) for r in rows if r.type == "observation.created"]
    assert [e["data"]["value"] for e in created] == [44, 30, 31, 20]
    assert all(e["data"]["course_id"] == course["id"] for e in created)
    assert all("note" not in e["data"] for e in created)
    assert not any("free text" in r.payload for r in rows)
    recommendation = [json.loads(r.payload) for r in rows if r.type == "recommendation.changed"]
    assert recommendation, "the first recommendation of the course is a change"
    assert recommendation[0]["data"]["previous_action"] is None
    # Each stored recommendation change has exactly one event; none repeats the one before.
    pairs = [(e["data"]["action"], e["data"]["rule"]) for e in recommendation]
    assert all(a != b for a, b in itertools.pairwise(pairs))


async def test_course_status_changes_are_events(push: Push, engine: AsyncEngine) -> None:
    course = await create_course(push.clinician)
    for status in ("paused", "active", "completed"):
        response = await push.clinician.patch(
            f"{API}/courses/{course['id']}", json={"status": status}
        )
        assert response.status_code == 200, response.text
    notes = await push.clinician.patch(f"{API}/courses/{course['id']}", json={"notes": "x"})
    assert notes.status_code == 200
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OutboxEvent.payload)
                .where(OutboxEvent.type == "course.status_changed")
                .order_by(OutboxEvent.seq)
            )
        ).all()
    changes = [json.loads(r.payload)["data"] for r in rows]
    assert [(c["previous_status"], c["status"]) for c in changes] == [
        ("active", "paused"),
        ("paused", "active"),
        ("active", "completed"),
    ]


async def test_metrics_show_the_outbox(push: Push) -> None:
    async with receiving(always(500)) as receiver:
        await subscribe(push, receiver)
        course = await create_course(push.clinician)
        await change_frequency(push, course["id"], 2)
        await receiver.wait_for(lambda r: len(r.received) >= 1)
        text = (await client_of(push.app).get("/metrics")).text
    figures = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("outcomes_outbox_")
    }
    assert figures["outcomes_outbox_pending"] >= 1
    assert figures["outcomes_outbox_failed"] == 0
    assert figures["outcomes_outbox_oldest_pending_seconds"] >= 0
