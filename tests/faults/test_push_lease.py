"""The lease under a real crash (issue 17, docs/push.md "Delivery"): a delivery claimed by a
worker that dies mid-attempt is delivered later by another process, with the same
``webhook-id``.

A private PostgreSQL cluster runs a real ``outcomes serve --workers 2`` with its dispatcher on
(a 2 s push timeout, so a lease of 2 × 2 + 5 = 9 s). The receiver holds the first attempt and,
while holding it, kills with SIGKILL the worker that sent it (the process holding the other
end of the connection). Nothing records the attempt: the delivery stays claimed until its
lease ends, then the other worker (or the one uvicorn started anew) claims it and sends it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from bench.server import Server, serve
from tests.factories import API
from tests.faults.support import (
    LEASE,
    PUSH_ENV,
    add_webhook,
    api_client,
    cli_token,
    pid_of_peer,
    private_cluster,
    report,
    seed_patient,
)
from tests.push.receiver import Received, receiving
from tests.support import migrate


async def settled(admin: httpx.AsyncClient, hook_id: str) -> list[dict[str, Any]]:
    """The webhook's deliveries once none is pending (10 s at most)."""
    items: list[dict[str, Any]] = []
    for _ in range(100):
        items = (await admin.get(f"{API}/webhooks/{hook_id}/deliveries")).json()["items"]
        if items and all(d["status"] != "pending" for d in items):
            break
        await asyncio.sleep(0.1)
    return items


@pytest.mark.postgres_only
async def test_a_delivery_whose_worker_is_killed_mid_attempt_comes_back_with_its_id(
    tmp_path: Path,
) -> None:
    killed: list[int] = []
    senders: list[int | None] = []  # the process that sent each attempt
    holding, release = asyncio.Event(), asyncio.Event()
    server_box: list[Server] = []

    async def answer(request: Received) -> int:
        server = server_box[0]
        pid = pid_of_peer(request.peer_port, server.worker_pids())
        senders.append(pid)
        if killed or pid is None or pid == server.pid:
            return 200  # (no worker found: the assertions below say so)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        holding.set()
        await release.wait()  # never answered in time: its sender is gone
        return 200

    with private_cluster() as cluster:
        url = cluster.url()
        migrate(url)
        admin_token = cli_token(url, "admin")
        token = cli_token(url, "clinician")
        async with receiving(answer) as receiver:
            with serve(url, workers=2, migrate=False, env=PUSH_ENV) as server:
                server_box.append(server)
                hook = await add_webhook(
                    server.base, admin_token, receiver.url, "course.frequency_changed"
                )
                async with api_client(server.base, token) as api:
                    patient = await seed_patient(api)
                    changed = await api.post(
                        f"{API}/courses/{patient.course_id}/frequency",
                        json={"sessions_per_week": 2, "reason": "lease test"},
                    )
                    assert changed.status_code == 200, changed.text
                await asyncio.wait_for(holding.wait(), 20)
                await receiver.wait_for(lambda r: len(r.accepted()) >= 1, LEASE + 15)
                resent = receiver.accepted()[0]  # (the held attempt is answered later)
                async with api_client(server.base, admin_token) as admin:
                    deliveries = await settled(admin, hook["id"])
            release.set()
    first = receiver.arrivals[0]
    waited = resent.at - first.at
    report(
        "push-lease",
        {
            "killed_worker": killed,
            "senders": senders,
            "seconds_between_attempts": round(waited, 2),
            "deliveries": deliveries,
        },
        tmp_path,
    )

    assert len(killed) == 1, f"the first attempt's sender was not a worker: {senders}"
    assert resent.headers["webhook-id"] == first.headers["webhook-id"]
    body = Webhook(hook["secret"]).verify(resent.body, resent.headers)
    assert body["data"]["course_id"] == patient.course_id
    assert len(senders) == 2
    assert senders[1] not in (None, killed[0])  # the other worker, or the one started anew
    # It came back when the lease ended (not as a retry after a failed attempt: none was
    # recorded), and not much later.
    assert LEASE - 1 <= waited <= LEASE + 10
    [delivery] = deliveries
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 2  # each claim counts one
    assert delivery["event_id"] == first.headers["webhook-id"]
