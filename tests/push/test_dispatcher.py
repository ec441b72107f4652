"""The dispatcher's own promises (docs/push.md "Delivery"), each against a real receiver on a
loopback port."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from tests.factories import API, create_course
from tests.push.receiver import FAST, Received, receiving
from tests.support import Issue, client_of, running


async def webhook(admin: httpx.AsyncClient, url: str) -> str:
    made = await admin.post(
        f"{API}/webhooks", json={"url": url, "events": ["course.frequency_changed"]}
    )
    assert made.status_code == 201, made.text
    hook_id: str = made.json()["id"]
    return hook_id


async def change(clinician: httpx.AsyncClient, course_id: str, per_week: int) -> None:
    response = await clinician.post(
        f"{API}/courses/{course_id}/frequency",
        json={"sessions_per_week": per_week, "reason": "dispatcher test"},
    )
    assert response.status_code == 200, response.text


async def test_a_slow_receiver_gets_at_most_its_share_of_attempts_at_once(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """push_per_subscription bounds one subscription's attempts in flight, even when a single
    claim finds more of its deliveries due (here 6 courses, so 6 streams, at once)."""
    at_once = 0
    most = 0

    async def slow(_request: Received) -> int:
        nonlocal at_once, most
        at_once += 1
        most = max(most, at_once)
        await asyncio.sleep(0.4)
        at_once -= 1
        return 200

    async with (
        receiving(slow) as receiver,
        running(settings, **(FAST | {"push_per_subscription": 2, "push_dispatch": False})) as app,
        client_of(app, await issue_token("admin")) as admin,
        client_of(app, await issue_token("clinician")) as clinician,
    ):
        await webhook(admin, receiver.url)
        courses = [await create_course(clinician) for _ in range(6)]
        for course in courses:
            await change(clinician, course["id"], 2)
        # A dispatcher starts with all six due: its first claim finds them together.
        async with running(settings, **(FAST | {"push_per_subscription": 2})):
            await receiver.wait_for(lambda r: len(r.accepted()) == 6)
    assert most == 2
