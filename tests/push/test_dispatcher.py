"""The dispatcher's own promises (docs/push.md "Delivery"), each against a real receiver on a
loopback port: the limit per subscription, an attempt's whole duration bounded by the push
timeout, a finished attempt that lets its stream's next event go at once, and events fanned
out while no subscription exists: kept, marked, and never sent to a later subscription."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.outbox.models import OutboxEvent
from tests.factories import API, create_course
from tests.push.receiver import FAST, Received, Receiver, always, receiving
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


@contextlib.asynccontextmanager
async def dripping(seconds: float) -> AsyncIterator[Receiver]:
    """A receiver that answers its first request one header byte at a time for ``seconds``
    (each byte well within any read timeout), and every later one at once with a 200."""
    receiver = Receiver(always(200))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = not receiver.arrivals
        if not first:
            await receiver._handle(reader, writer)
            return
        with contextlib.suppress(ConnectionError):
            headers: dict[str, str] = {}
            await reader.readline()
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            receiver.arrivals.append(Received("/hook", headers, body, 0, 0, time.monotonic()))
            receiver.arrived.set()
            writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                writer.write(b"z")
                await writer.drain()
                await asyncio.sleep(0.2)
            writer.write(b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()


async def test_an_attempt_ends_at_the_push_timeout_even_when_bytes_keep_coming(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """A receiver that trickles its answer never lets a read time out; the attempt still ends
    at push_timeout_seconds (the lease assumes it does), failed, and the next one delivers."""
    async with (
        dripping(6.0) as receiver,
        running(settings, **(FAST | {"push_timeout_seconds": 1.0})) as app,
        client_of(app, await issue_token("admin")) as admin,
        client_of(app, await issue_token("clinician")) as clinician,
    ):
        hook_id = await webhook(admin, receiver.url)
        course = await create_course(clinician)
        await change(clinician, course["id"], 2)
        await receiver.wait_for(lambda r: len(r.accepted()) == 1, within_s=15)
        first, second = receiver.arrivals[0], receiver.accepted()[0]
        for _ in range(50):
            [delivery] = (await admin.get(f"{API}/webhooks/{hook_id}/deliveries")).json()["items"]
            if delivery["status"] == "delivered":
                break
            await asyncio.sleep(0.1)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.at - first.at < 3.0  # not after the 6 s of trickle
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 2


@pytest.mark.parametrize("run", range(3))
async def test_a_finished_attempt_lets_the_streams_next_event_go_without_waiting_a_poll(
    settings: Settings, engine: AsyncEngine, issue_token: Issue, run: int
) -> None:
    """Five changes of one course go one after the other; with a 30 s poll, each must still
    leave as soon as the one before is delivered (the wake-up is never lost)."""
    del run
    async with (
        receiving(always(200)) as receiver,
        running(settings, **(FAST | {"push_dispatch": False})) as app,
        client_of(app, await issue_token("admin")) as admin,
        client_of(app, await issue_token("clinician")) as clinician,
    ):
        await webhook(admin, receiver.url)
        course = await create_course(clinician)
        for per_week in (2, 3, 4, 5, 6):
            await change(clinician, course["id"], per_week)
        async with running(settings, **(FAST | {"push_poll_seconds": 30.0})):
            await receiver.wait_for(lambda r: len(r.accepted()) == 5, within_s=10)


async def test_events_with_no_subscription_are_kept_marked_and_not_sent_to_a_later_one(
    settings: Settings, engine: AsyncEngine, issue_token: Issue
) -> None:
    """With no subscription the fan-out only marks the events (and claims nothing): they stay
    in the outbox, fanned out, and a webhook registered afterwards gets the events written
    after it, the first of them as its first delivery."""

    async def events() -> list[tuple[str, bool]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(OutboxEvent.payload, OutboxEvent.dispatched_at).order_by(OutboxEvent.seq)
            )
            return [(payload, at is not None) for payload, at in rows.all()]

    async with (
        receiving(always(200)) as receiver,
        running(settings, **FAST) as app,
        client_of(app, await issue_token("admin")) as admin,
        client_of(app, await issue_token("clinician")) as clinician,
    ):
        course = await create_course(clinician)
        await change(clinician, course["id"], 2)
        for _ in range(100):
            if (before := await events()) and all(fanned for _, fanned in before):
                break
            await asyncio.sleep(0.05)
        assert [fanned for _, fanned in before] == [True]  # written, kept, fanned out
        await webhook(admin, receiver.url)
        await change(clinician, course["id"], 3)
        await receiver.wait_for(lambda r: len(r.accepted()) == 1, within_s=10)
        await asyncio.sleep(0.3)  # a few polls more: nothing else comes
        assert len(await events()) == 2
    [delivery] = receiver.accepted()
    data = json.loads(delivery.body)["data"]
    assert (data["previous_sessions_per_week"], data["sessions_per_week"]) == (2, 3)
