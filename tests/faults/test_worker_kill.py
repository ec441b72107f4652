"""``kill -9`` of the server's workers in the middle of concurrent writes (issue 15).

A real ``outcomes serve --workers 2`` on the suite's database (SQLite or PostgreSQL, whichever
this run tests). Offline apps post 1,120 observations, each with its own client id, 16 at a
time; every worker is killed with SIGKILL twice along the way (uvicorn's supervisor starts new
ones). An app whose request got no answer, or a 503, sends the same observation again, with
the same id, until it is acknowledged. Afterwards each observation is stored exactly once,
with the content that was sent, and every acknowledged request has its audit row.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.server import Server, serve
from tests.factories import API
from tests.faults.support import (
    Attempt,
    Patient,
    api_client,
    audited_request_ids,
    observation_body,
    report,
    seed_patient,
    send,
    stored_observations,
)
from tests.support import Issue

WRITERS = 16  # apps writing at once
WRITES_EACH = 70  # 1,120 writes in all
PATIENTS = 4
KILLS_AT = (250, 650)  # acknowledged writes at which every worker is killed
MAX_ATTEMPTS = 60  # per write
HARD_LIMIT = 150.0  # s: no app sends anything after this, whatever happens
PAUSE_AFTER_FAILURE = 0.2  # s before the same write is sent again


@dataclass
class KillRun:
    began: float = field(default_factory=time.monotonic)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the body
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: dict[str, Attempt] = field(default_factory=dict)  # id -> its 201 or 200
    unexpected: list[Attempt] = field(default_factory=list)  # neither success nor retryable
    killed: list[list[int]] = field(default_factory=list)  # the pids of each round
    writers_done: int = 0

    def over(self) -> bool:
        return time.monotonic() - self.began > HARD_LIMIT


async def writes_through_kills(server: Server, token: str, patients: list[Patient]) -> KillRun:
    run = KillRun()
    now = datetime.now(UTC)

    async def killer() -> None:
        for threshold in KILLS_AT:
            while len(run.acknowledged) < threshold:
                if run.over() or run.writers_done == WRITERS:
                    return
                await asyncio.sleep(0.01)
            # Never the supervisor itself (worker_pids falls back to it when it has none).
            workers = [pid for pid in server.worker_pids() if pid != server.pid]
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            run.killed.append(workers)

    async def writer(number: int) -> None:
        patient = patients[number % len(patients)]
        url = f"{API}/patients/{patient.id}/observations"
        try:
            async with api_client(server.base, token) as client:
                for serial in range(WRITES_EACH):
                    body = observation_body(number * 1000 + serial, now)
                    run.sent[body["id"]] = body
                    for _ in range(MAX_ATTEMPTS):
                        if run.over():
                            return
                        attempt = await send(client, "write", "POST", url, json=body)
                        run.attempts.append(attempt)
                        if attempt.succeeded:
                            run.acknowledged[body["id"]] = attempt
                            break
                        if attempt.status not in (None, 503):
                            run.unexpected.append(attempt)
                            break
                        await asyncio.sleep(PAUSE_AFTER_FAILURE)  # then the same id again
        finally:
            run.writers_done += 1

    async with asyncio.TaskGroup() as group:  # one failing cancels the others
        group.create_task(killer())
        for number in range(WRITERS):
            group.create_task(writer(number))
    return run


async def test_killing_every_worker_mid_write_loses_and_duplicates_no_acknowledged_write(
    database_url: str, issue_token: Issue, tmp_path: Path
) -> None:
    token = await issue_token("clinician")
    with serve(database_url, workers=2, migrate=False) as server:
        async with api_client(server.base, token) as api:
            patients = [await seed_patient(api) for _ in range(PATIENTS)]
        run = await writes_through_kills(server, token, patients)
        seconds = round(time.monotonic() - run.began, 1)
    stored = await stored_observations(database_url, [p.id for p in patients])
    stored_ids = [row[0] for row in stored]
    acknowledged_requests = [a.request_id for a in run.acknowledged.values() if a.request_id]
    audited = await audited_request_ids(database_url, acknowledged_requests)

    missing = [i for i in run.acknowledged if i not in set(stored_ids)]
    duplicates = len(stored_ids) - len(set(stored_ids))
    strangers = [i for i in stored_ids if i not in run.sent]  # stored, but nobody sent it
    altered = [
        row[0]
        for row in stored
        if row[0] in run.sent
        and (
            row[1] != run.sent[row[0]]["value"]
            or row[2] != datetime.fromisoformat(run.sent[row[0]]["recorded_at"])
        )
    ]
    figures: dict[str, Any] = {
        "database": database_url.split(":", 1)[0],
        "writers": WRITERS,
        "writes": len(run.sent),
        "requests": len(run.attempts),
        "answers": dict(Counter(str(a.status or a.error) for a in run.attempts)),
        "kills": [len(pids) for pids in run.killed],
        "no_answer": sum(a.status is None for a in run.attempts),
        "503s": sum(a.status == 503 for a in run.attempts),
        "acknowledged": len(run.acknowledged),
        "acknowledged_as_replay_200": sum(a.status == 200 for a in run.acknowledged.values()),
        "unexpected": [a.describe(run.began) for a in run.unexpected][:10],
        "stored": len(stored_ids),
        "writes_missing": len(missing),
        "duplicates": duplicates + len(strangers),
        "altered": len(altered),
        "audit_rows_missing": len(set(acknowledged_requests) - audited),
        "seconds": seconds,
    }
    report(f"worker-kill-{figures['database']}", figures, tmp_path)

    # The faults happened: two rounds, each killing both workers while writes were in flight.
    assert [len(pids) for pids in run.killed] == [2, 2]
    assert figures["no_answer"] > 0, "no request was cut by the kills"
    # Every write was acknowledged in the end, only after successes, lost answers or 503s.
    assert figures["unexpected"] == []
    assert len(run.acknowledged) == len(run.sent) == WRITERS * WRITES_EACH
    # Each stored once, as sent, and audited.
    assert missing == []
    assert figures["duplicates"] == 0
    assert altered == []
    assert len(stored_ids) == len(run.sent)
    assert figures["audit_rows_missing"] == 0
