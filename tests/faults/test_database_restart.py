"""PostgreSQL restarts under load (issue 15, API.md "Failure semantics").

A private cluster (``initdb`` in a temporary folder, on a free port) runs a real
``outcomes serve --workers 2``. Clinicians' apps post observations with client ids and read
trends and observations while the cluster is stopped, kept down for a few seconds and started
again. While it is down every answer is a 503 problem with Retry-After; within 5 s of its
return requests succeed again; every write that was acknowledged is stored; every request
that was served is audited.

The restart happens once, in a module fixture; each test judges one of those promises, so the
ones broken before issue 15's fix were marked xfail while the others kept guarding.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.server import serve
from tests.factories import API
from tests.faults.support import (
    Attempt,
    Cluster,
    Patient,
    api_client,
    audited_request_ids,
    cli_token,
    observation_body,
    private_cluster,
    report,
    seed_patient,
    send,
    stored_observations,
)
from tests.support import migrate

CLIENTS = 12  # concurrent apps
PATIENTS = 4
LOAD_BEFORE_STOP = 3.0  # seconds of load before the cluster is stopped
DOWN_SECONDS = 3.0  # how long it stays down
LOAD_AFTER_START = 6.0  # seconds of load once it is back
HARD_LIMIT = 45.0  # no client sends anything after this many seconds, whatever happens
MAX_REQUESTS_PER_CLIENT = 600
PAUSE_AFTER_FAILURE = 0.2  # s: shorter than Retry-After, so the return is seen to the 0.2 s
RECOVERY_LIMIT = 5.0  # s from the cluster's return to the first success


@dataclass
class RestartRun:
    began: float = field(default_factory=time.monotonic)
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # observation id -> request id
    stopped: float = 0.0  # pg_ctl stop returned: the cluster is down
    start_called: float = 0.0  # pg_ctl start is called: still down until it returns
    started: float = 0.0  # pg_ctl start returned: it accepts connections


async def restart_under_load(
    cluster: Cluster, base: str, token: str, patients: list[Patient]
) -> RestartRun:
    run = RestartRun()
    now = datetime.now(UTC)

    async def restart() -> None:
        await asyncio.sleep(LOAD_BEFORE_STOP)
        await asyncio.to_thread(cluster.stop, "fast")
        run.stopped = time.monotonic()
        await asyncio.sleep(DOWN_SECONDS)
        run.start_called = time.monotonic()
        await asyncio.to_thread(cluster.start)
        run.started = time.monotonic()

    def load_over() -> bool:
        moment = time.monotonic()
        if moment - run.began > HARD_LIMIT:
            return True
        return run.started > 0 and moment - run.started > LOAD_AFTER_START

    async def app(number: int) -> None:
        patient = patients[number % len(patients)]
        observations = f"{API}/patients/{patient.id}/observations"
        pending: dict[str, object] | None = None  # a write not acknowledged yet: sent again
        async with api_client(base, token) as client:
            for step in range(MAX_REQUESTS_PER_CLIENT):
                if load_over():
                    return
                if step % 2 == 0:
                    body = pending or observation_body(number * 10_000 + step, now)
                    attempt = await send(client, "write", "POST", observations, json=body)
                    pending = None if attempt.succeeded else body
                    if attempt.succeeded and attempt.request_id:
                        run.acknowledged[str(body["id"])] = attempt.request_id
                elif step % 4 == 1:
                    url = f"{API}/patients/{patient.id}/trends"
                    attempt = await send(client, "read", "GET", url)
                else:
                    attempt = await send(client, "read", "GET", observations, params={"limit": 20})
                run.attempts.append(attempt)
                if not attempt.succeeded:
                    await asyncio.sleep(PAUSE_AFTER_FAILURE)

    async with asyncio.TaskGroup() as group:  # one failing cancels the others
        group.create_task(restart())
        for number in range(CLIENTS):
            group.create_task(app(number))
    return run


@dataclass(frozen=True, slots=True)
class Restarted:
    """A restart under load, as the tests below judge it."""

    run: RestartRun
    down: list[Attempt]  # sent once the cluster was down, answered before its start began
    recovery: float | None  # s from its return to the first success after it
    lost: list[str]  # acknowledged writes that are not stored
    unaudited: set[str]  # request ids of successes without an audit row
    figures: dict[str, Any]


@pytest.fixture(scope="module")
async def restarted(tmp_path_factory: pytest.TempPathFactory) -> Restarted:
    """One restart under load for the whole module (each test judges one promise of it): a
    private cluster and the server are started, loaded, and stopped before any test runs."""
    with private_cluster() as cluster:
        migrate(cluster.url())
        token = cli_token(cluster.url(), "clinician")
        with serve(cluster.url(), workers=2, migrate=False) as server:
            async with api_client(server.base, token) as api:
                patients = [await seed_patient(api) for _ in range(PATIENTS)]
            run = await restart_under_load(cluster, server.base, token, patients)
        stored = {
            row[0] for row in await stored_observations(cluster.url(), [p.id for p in patients])
        }
        served = [a.request_id for a in run.attempts if a.succeeded and a.request_id]
        audited = await audited_request_ids(cluster.url(), served)
    if not run.started:
        raise RuntimeError("the cluster was never started again")

    down = [a for a in run.attempts if a.started >= run.stopped and a.ended <= run.start_called]
    back = sorted(
        (a for a in run.attempts if a.succeeded and a.started >= run.started), key=lambda a: a.ended
    )
    recovery = round(back[0].ended - run.started, 2) if back else None
    lost = [i for i in run.acknowledged if i not in stored]
    unaudited = set(served) - audited
    figures: dict[str, Any] = {
        "clients": CLIENTS,
        "requests": len(run.attempts),
        "answers": dict(Counter(str(a.status or a.error) for a in run.attempts)),
        "down_seconds": round(run.start_called - run.stopped, 2),
        "restart_seconds": round(run.started - run.start_called, 2),
        "requests_while_down": len(down),
        "answers_while_down": dict(Counter(str(a.status or a.error) for a in down)),
        "503s": sum(a.status == 503 for a in run.attempts),
        "503s_with_retry_after_problem": sum(a.retryable_problem for a in run.attempts),
        "500s": sum(a.status == 500 for a in run.attempts),
        "no_answer": sum(a.status is None for a in run.attempts),
        "recovery_seconds": recovery,
        "writes_acknowledged": len(run.acknowledged),
        "writes_lost": len(lost),
        "successes": len(served),
        "audit_rows_missing": len(unaudited),
    }
    report("database-restart", figures, tmp_path_factory.mktemp("database-restart"))
    return Restarted(run, down, recovery, lost, unaudited, figures)


@pytest.mark.postgres_only
def test_the_outage_lasted_its_seconds_and_the_load_met_it(restarted: Restarted) -> None:
    assert restarted.figures["down_seconds"] >= DOWN_SECONDS
    assert len(restarted.down) >= CLIENTS, "too few requests met the outage to judge it"


@pytest.mark.postgres_only
def test_while_postgres_is_down_every_answer_is_a_503_problem_with_retry_after(
    restarted: Restarted,
) -> None:
    origin = restarted.run.began
    assert [a.describe(origin) for a in restarted.down if not a.retryable_problem] == []


@pytest.mark.postgres_only
def test_around_the_restart_no_request_gets_a_500_or_no_answer(restarted: Restarted) -> None:
    """Successes and 503 problems with Retry-After only: never a 500, a reset, a timeout."""
    run = restarted.run
    failed = [a for a in run.attempts if not (a.succeeded or a.retryable_problem)]
    assert [a.describe(run.began) for a in failed] == []


@pytest.mark.postgres_only
def test_requests_succeed_again_within_5_s_of_the_databases_return(restarted: Restarted) -> None:
    assert restarted.recovery is not None, "no request succeeded after the cluster came back"
    assert restarted.recovery <= RECOVERY_LIMIT


@pytest.mark.postgres_only
def test_no_acknowledged_write_is_lost(restarted: Restarted) -> None:
    assert len(restarted.run.acknowledged) > 0
    assert restarted.lost == []


@pytest.mark.postgres_only
def test_every_request_served_around_the_restart_is_audited(restarted: Restarted) -> None:
    assert restarted.figures["successes"] > 0
    assert restarted.unaudited == set()
