"""`--webhook`: the write figures again with one webhook registered (issue 17).

A loopback receiver (asyncio streams, HTTP/1.1 keep-alive, 204 to every POST, in a thread of
the benchmark's own process, which is idle while wrk and the limit's client processes run)
counts what the service's dispatcher delivers. It is registered through the admin API as a
user would (`POST /api/v1/webhooks` with an admin token; the server runs with
`OUTCOMES_WEBHOOK_ALLOWED_HOSTS=127.0.0.1` so that a plain-http loopback URL is accepted),
for every event type, so every stored observation is one delivery. ``Probe`` reads, around
each write figure, how many events the outbox holds, how many the receiver got, and what
/metrics says is still pending.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from bench.databases import asyncpg_dsn

HOST = "127.0.0.1"
SERVER_ENV = {"OUTCOMES_WEBHOOK_ALLOWED_HOSTS": HOST}
EVENTS = [
    "observation.created",
    "recommendation.changed",
    "course.frequency_changed",
    "course.status_changed",
]
_HEADER_END = b"\r\n\r\n"
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Receiver:
    """What the receiver got: every POST, and the distinct ``webhook-id`` headers (an event
    sent twice, after a lost answer or a lease that ran out, counts once there)."""

    port: int = 0
    posts: int = 0
    ids: set[str] = field(default_factory=set)
    first_at: float | None = None  # time.monotonic() of the first and last POST
    last_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/outcomes-hook"

    def counts(self) -> tuple[int, int]:
        """(POSTs, distinct events), read together."""
        return self.posts, len(self.ids)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(_HEADER_END)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    writer.write(_BAD_REQUEST)
                    return
                if length:
                    await reader.readexactly(length)
                if lines[0].startswith("POST "):
                    self.posts += 1
                    self.ids.add(headers.get("webhook-id", ""))
                    self.last_at = time.monotonic()
                    if self.first_at is None:
                        self.first_at = self.last_at
                writer.write(_NO_CONTENT)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver on a free loopback port, in a thread with its own event loop, until the
    block ends."""
    receiver = Receiver()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Future[None] | None = None

    async def main() -> None:
        nonlocal stop
        stop = loop.create_future()
        server = await asyncio.start_server(receiver.handle, HOST, 0, backlog=256)
        receiver.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the webhook receiver did not start")
    try:
        yield receiver
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)
        loop.close()


def register(base: str, admin_token: str, receiver: Receiver) -> str:
    """``POST /api/v1/webhooks`` as an admin would: the receiver, for every event type.
    Returns the webhook's id."""
    response = httpx.post(
        f"{base}/api/v1/webhooks",
        headers={"Authorization": f"Bearer {admin_token}"},
        json={"url": receiver.url, "events": EVENTS, "description": "bench receiver"},
        timeout=10,
    )
    if response.status_code != 201:
        raise RuntimeError(f"webhook registration: {response.status_code} {response.text[:500]}")
    webhook_id: str = response.json()["id"]
    return webhook_id


_METRIC = re.compile(r"^(outcomes_outbox_[a-z_]+) ([0-9.eE+-]+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float  # time.monotonic()
    events: int  # outbox rows written so far (the highest seq)
    posts: int  # receiver: POSTs, and distinct events
    delivered: int
    pending: int  # /metrics: events not fanned out and deliveries not yet delivered or failed
    oldest_pending_s: float
    failed: int


@dataclass(frozen=True, slots=True)
class Probe:
    database_url: str
    base: str
    receiver: Receiver

    def __call__(self) -> Snapshot:
        at = time.monotonic()
        posts, delivered = self.receiver.counts()
        metrics = dict(_METRIC.findall(httpx.get(f"{self.base}/metrics", timeout=10).text))
        return Snapshot(
            at=at,
            events=asyncio.run(_events(self.database_url)),
            posts=posts,
            delivered=delivered,
            pending=int(float(metrics.get("outcomes_outbox_pending", "-1"))),
            oldest_pending_s=float(metrics.get("outcomes_outbox_oldest_pending_seconds", "-1")),
            failed=int(float(metrics.get("outcomes_outbox_failed", "-1"))),
        )


async def _events(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        seq: int | None = await conn.fetchval("SELECT max(seq) FROM outbox_events")
    finally:
        await conn.close()
    return seq or 0


def delta(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What happened between two snapshots (a write figure: its limit and load rounds)."""
    seconds = after.at - before.at
    written = after.events - before.events
    delivered = after.delivered - before.delivered
    return {
        "seconds": round(seconds, 1),
        "events_written": written,
        "events_delivered": delivered,
        "receiver_posts": after.posts - before.posts,
        "delivered_per_s": round(delivered / seconds, 1) if seconds else 0.0,
        "pending_at_end": after.pending,
        "oldest_pending_s_at_end": round(after.oldest_pending_s, 1),
        "failed_at_end": after.failed,
    }


def drain(probe: Probe, seconds: float) -> dict[str, Any]:
    """Waits until /metrics reports nothing pending, for at most ``seconds``: how long the
    dispatcher took to catch up once the load stopped (None if it had not), and what was
    left."""
    started = time.monotonic()
    snap = probe()
    while snap.pending > 0 and time.monotonic() - started < seconds:
        time.sleep(1)
        snap = probe()
    took = time.monotonic() - started
    return {
        "drained_in_s": round(took, 1) if snap.pending == 0 else None,
        "waited_s": round(took, 1),
        "pending_left": snap.pending,
        "events": snap.events,
        "events_delivered": snap.delivered,
        "receiver_posts": snap.posts,
    }
