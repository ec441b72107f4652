"""The dispatcher: runs in every process of the service, delivering the outbox at least once.

Each round, in short transactions of their own (a round runs once a poll, and whenever an
attempt ends: its stream's next event may go):
1. once a poll (or at once while a batch is full), fan-out: events not yet fanned out become
   one delivery per subscription that wants them (one process at a time: an advisory lock on
   PostgreSQL, the write lock on SQLite);
2. every round, claim: due deliveries, each the first pending one of its stream (a course's
   events, in order) for its subscription, ``FOR UPDATE SKIP LOCKED`` so processes never
   claim the same one, leased (due again when the lease ends, so a process killed
   mid-attempt loses nothing: the next claim sends it again, with the same ``webhook-id``);
3. attempts, concurrently (at most ``push_concurrency`` per process and
   ``push_per_subscription`` per subscription, each ended after ``push_timeout_seconds``): a
   2xx is delivered; anything else (a 3xx too: redirects are not followed, a timeout, a
   refused connection) is retried after an exponential backoff with jitter, until the
   retry window ends: then `failed`;
4. once a poll: FHIR heartbeats (each sent on its own), and now and then the purge of
   delivered events.

With no subscription (the fan-out finds none, under its lock), a poll's round is that one
transaction: the new events are marked as fanned out, and there is nothing to claim (a
delivery belongs to a subscription) and no heartbeat to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import utcnow
from app.push import fhir, signing
from app.push.models import PushSubscription
from app.push.repository import Claimed, PushRepository

logger = logging.getLogger("app.push")

FAN_OUT_BATCH = 500
PURGE_EVERY_SECONDS = 300.0


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones: base · 2^(n-1), at
    most ``cap``, of which a random half ("equal jitter": receivers that failed together do
    not retry together, and no wait is shorter than half the nominal one)."""
    nominal: float = min(cap, base * 2.0 ** max(0, attempts - 1))
    return nominal / 2 + random.uniform(0, nominal / 2)  # noqa: S311 (jitter, not a secret)


class Dispatcher:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.lease = timedelta(seconds=2 * settings.push_timeout_seconds + 5)
        self.window = timedelta(hours=settings.push_retry_window_hours)
        self.in_flight: Counter[uuid.UUID] = Counter()  # subscription id → attempts running
        self.tasks: set[asyncio.Task[None]] = set()  # attempts
        self.beats: set[asyncio.Task[None]] = set()  # heartbeats
        self.wake = asyncio.Event()
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=settings.push_timeout_seconds,
            limits=httpx.Limits(max_connections=settings.push_concurrency),
            headers={"user-agent": "outcomes-webhooks/1"},
        )
        self._runner: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self._last_poll = -float("inf")  # time.monotonic() of the last fan-out
        self._more_to_fan_out = False

    # --- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="push-dispatcher")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        running = [*self.tasks, *self.beats]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.client.aclose()

    async def _run(self) -> None:
        while True:
            # Cleared before the round, not after: an attempt that ends during the round (its
            # stream's next event may go now) wakes the next one at once.
            self.wake.clear()
            busy = False
            try:
                busy = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down, say: try again later
                logger.warning("push dispatcher round failed: %s", type(exc).__name__)
            if not busy:
                until_poll = self._last_poll + self.settings.push_poll_seconds - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(0.0, until_poll))

    async def step(self) -> bool:
        """One round; whether there may be more to do at once. New events are fanned out, and
        heartbeats and the purge looked at, once a poll (or at once while a fan-out finds a
        full batch); due deliveries are claimed every round, so a round woken by a finished
        attempt costs one transaction."""
        now = utcnow()
        polled = self._more_to_fan_out or (
            time.monotonic() - self._last_poll >= self.settings.push_poll_seconds
        )
        subscribed: bool | None = None  # unknown unless this round's fan-out looked
        if polled:
            self._last_poll = time.monotonic()
            async with self.sessionmaker() as session, session.begin():
                fanned = await PushRepository(session).fan_out(now, self.window, FAN_OUT_BATCH)
            self._more_to_fan_out = fanned.events == FAN_OUT_BATCH
            subscribed = fanned.subscribed
        claimed: list[Claimed] = []
        free = self.settings.push_concurrency - len(self.tasks)
        if free > 0 and subscribed is not False:
            async with self.sessionmaker() as session, session.begin():
                claimed = await PushRepository(session).claim(
                    now, self.lease, free, self.settings.push_per_subscription, self.in_flight
                )
            for delivery in claimed:
                self._spawn(delivery)
        if polled:
            await self._housekeeping(now, heartbeats=subscribed is not False)
        return self._more_to_fan_out or (free > 0 and len(claimed) == free)

    def _spawn(self, delivery: Claimed) -> None:
        sub_id = delivery.subscription.id
        self.in_flight[sub_id] += 1
        task = asyncio.create_task(self._attempt(delivery))
        self.tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.tasks.discard(finished)
            self.in_flight[sub_id] -= 1
            if self.in_flight[sub_id] <= 0:
                del self.in_flight[sub_id]
            self.wake.set()  # the stream's next event may go now

        task.add_done_callback(done)

    async def _housekeeping(self, now: datetime, *, heartbeats: bool = True) -> None:
        beats: list[PushSubscription] = []
        if heartbeats:
            async with self.sessionmaker() as session, session.begin():
                beats = await PushRepository(session).due_heartbeats(now)
        for sub in beats:  # each on its own: a slow endpoint holds up no round
            task = asyncio.create_task(self._heartbeat(sub, now))
            self.beats.add(task)
            task.add_done_callback(self.beats.discard)
        if time.monotonic() - self._last_purge > PURGE_EVERY_SECONDS:
            self._last_purge = time.monotonic()
            before = now - timedelta(hours=self.settings.push_retention_hours)
            async with self.sessionmaker() as session, session.begin():
                await PushRepository(session).purge(before)

    async def _heartbeat(self, sub: PushSubscription, now: datetime) -> None:
        body = fhir.heartbeat(sub, now)
        with contextlib.suppress(httpx.HTTPError, TimeoutError):
            async with asyncio.timeout(self.settings.push_timeout_seconds):
                await self.client.post(sub.url, content=body, headers=fhir.request_headers(sub))

    # --- one attempt --------------------------------------------------------------------------

    async def _attempt(self, delivery: Claimed) -> None:
        status: int | None = None
        error = ""
        try:
            # The whole attempt, not each read or write (httpx's timeout): a receiver that
            # trickles its answer must not outlive the lease, which assumes this bound.
            async with asyncio.timeout(self.settings.push_timeout_seconds):
                url, body, headers = await self._request(delivery)
                response = await self.client.post(url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
        except (httpx.TimeoutException, TimeoutError):
            error = "timeout"
        except httpx.HTTPError as exc:
            error = f"connection failed: {type(exc).__name__}"
        except Exception as exc:  # never the message: it could quote the payload or the URL
            logger.warning(
                "push delivery %s failed before sending: %s", delivery.id, type(exc).__name__
            )
            error = "internal error"
        now = utcnow()
        try:
            async with self.sessionmaker() as session, session.begin():
                repo = PushRepository(session)
                if not error and status is not None:
                    await repo.delivered(delivery, now, status)
                    return
                wait = backoff(
                    delivery.attempts,
                    self.settings.push_retry_base_seconds,
                    self.settings.push_retry_max_seconds,
                )
                next_at: datetime | None = now + timedelta(seconds=wait)
                if next_at is not None and next_at > delivery.retry_until:
                    next_at = None
                await repo.attempt_failed(delivery, now, status, error, next_at)
        except Exception as exc:  # the lease brings it back
            logger.warning("push delivery %s not recorded: %s", delivery.id, type(exc).__name__)

    async def _request(self, delivery: Claimed) -> tuple[str, bytes, dict[str, str]]:
        sub = delivery.subscription
        if sub.kind == "fhir":
            async with self.sessionmaker() as session:
                body = await fhir.notification(session, sub, delivery)
            return sub.url, body, fhir.request_headers(sub)
        assert sub.secret is not None
        body = delivery.payload.encode()
        headers = signing.headers(sub.secret, str(delivery.event_id), int(time.time()), body)
        headers["content-type"] = "application/json"
        return sub.url, body, headers
