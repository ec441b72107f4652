"""Issue 20's POST target, through HTTP: the latency of a pain-score POST for a patient whose
course holds 10,000 values (a device posting about 100 a day for 100 days, with sessions)
against one whose course holds 30, on the same server. Target: ≤ 1.5×.

The big patients' history is written straight into the tables (COPY on PostgreSQL) and its
days recomputed once, as the service does in the background for days that have settled
(app/analytics/days.py); the POSTs then go through `outcomes serve` (one worker), one at a
time, the two groups in alternating rounds so that drift on a shared machine hits both alike.

    python -m bench.course_post                     # PostgreSQL at 127.0.0.1 (its own database)
    python -m bench.course_post --database-url sqlite:////tmp/x.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from app.analytics.days import recompute_settled
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, table_of
from app.core.migrations import upgrade
from app.observations.models import Observation
from bench.databases import (
    DEFAULT_POSTGRES,
    bench_database_name,
    create_postgres,
    drop_postgres,
)
from bench.dataset import copy_rows, issue_staff_token, vacuum_analyze
from bench.server import serve

API = "/api/v1"
OBSERVATIONS = table_of(Observation)
DAYS = 100


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    response = await client.post(path, json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
    return response.json()


async def _patient(client: httpx.AsyncClient, now: datetime) -> tuple[str, str]:
    """A patient with a lumbar course started ``DAYS`` days ago and 10 sessions."""
    patient = (await _post(client, f"{API}/patients", {}))["id"]
    start = (now - timedelta(days=DAYS)).date()
    course = await _post(
        client, f"{API}/patients/{patient}/courses",
        {"indication": "spondylosis", "region": "lumbar", "technique": "paravertebral",
         "start_date": start.isoformat(), "adjustment": "confirm"},
    )  # fmt: skip
    for k in range(10):
        at = now - timedelta(days=DAYS - 1 - 3 * k, hours=2)
        body = {"performed_at": at.isoformat(), "pain_before": 8 - k // 3}
        await _post(client, f"{API}/courses/{course['id']}/sessions", body)
    return patient, course["id"]


def _history(
    patient: str, course: str, count: int, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """``count`` pain scores from 14 days before the start until an hour ago, 8 → 3."""
    first = now - timedelta(days=DAYS + 14)
    step = (now - timedelta(hours=1) - first) / count
    common = {"patient_id": uuid.UUID(patient), "instrument": "pain-nrs", "received_at": now}
    common |= {"course_id": uuid.UUID(course), "session_id": None, "context": None}
    common |= {"source": "device", "note": None}
    return [
        common
        | {
            "id": uuid.uuid4(),
            "value": float(max(0, min(10, round(8 - 5 * i / count + rng.gauss(0, 1))))),
            "recorded_at": first + step * i,
        }
        for i in range(count)
    ]


async def _write(url: str, rows: list[dict[str, Any]]) -> None:
    """The history (PostgreSQL: COPY), then every day of it recomputed."""
    if make_url(url).get_backend_name() == "postgresql":
        import asyncpg

        from bench.databases import asyncpg_dsn

        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await copy_rows(conn, OBSERVATIONS, rows)
        finally:
            await conn.close()
    engine = create_engine(Settings(database_url=url))
    try:
        if make_url(url).get_backend_name() != "postgresql":
            async with engine.begin() as conn:
                await conn.execute(insert(OBSERVATIONS), rows)
        sessionmaker = create_sessionmaker(engine)
        while await recompute_settled(sessionmaker, settle_seconds=0):
            pass
    finally:
        await engine.dispose()


async def _latencies(base: str, token: str, patients: list[str], requests: int) -> list[float]:
    """Seconds of each of ``requests`` POSTs, one at a time, round the patients."""
    out = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        for k in range(requests):
            body = {
                "instrument": "pain-nrs",
                "value": 4,
                "recorded_at": datetime.now(UTC).isoformat(),
            }
            started = time.perf_counter()
            await _post(client, f"{API}/patients/{patients[k % len(patients)]}/observations", body)
            out.append(time.perf_counter() - started)
    return out


async def _run(url: str, patients: int, requests: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(20)
    now = datetime.now(UTC)
    token = await issue_staff_token(url)
    groups: dict[int, list[str]] = {30: [], 10_000: []}
    rows: list[dict[str, Any]] = []
    with serve(url, migrate=False) as server:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base, timeout=60, headers=headers) as c:
            for size, members in groups.items():
                for _ in range(patients):
                    patient, course = await _patient(c, now)
                    members.append(patient)
                    rows += _history(patient, course, size - 10, now, rng)  # + 10 pain_before
    await _write(url, rows)
    if make_url(url).get_backend_name() == "postgresql":
        await vacuum_analyze(url)
    timings: dict[int, list[float]] = {size: [] for size in groups}
    with serve(url, migrate=False) as server:
        for members in groups.values():
            await _latencies(server.base, token, members, 50)  # warm-up
        for _ in range(rounds):
            for size, members in groups.items():
                timings[size] += await _latencies(server.base, token, members, requests)
    figures: dict[str, Any] = {}
    for size, seconds in timings.items():
        seconds.sort()
        figures[f"p50_ms_{size}"] = statistics.median(seconds) * 1000
        figures[f"p99_ms_{size}"] = seconds[int(len(seconds) * 0.99) - 1] * 1000
    figures["ratio_p50"] = figures["p50_ms_10000"] / figures["p50_ms_30"]
    figures["target"] = "PASS" if figures["ratio_p50"] <= 1.5 else "FAIL"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="default: a new database on local PostgreSQL")
    parser.add_argument("--patients", type=int, default=8, help="of each size")
    parser.add_argument("--requests", type=int, default=200, help="per group and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    name = None
    url = args.database_url
    if url is None:
        name = bench_database_name("coursepost")
        url = create_postgres(DEFAULT_POSTGRES, name)
    else:
        upgrade(url)
    try:
        figures = asyncio.run(_run(url, args.patients, args.requests, args.rounds))
    finally:
        if name is not None:
            drop_postgres(DEFAULT_POSTGRES, name)
    print(
        f"course_post: a POST for a patient with 10,000 values takes "
        f"{figures['p50_ms_10000']:.2f} ms (p50; p99 {figures['p99_ms_10000']:.1f}), with 30 "
        f"{figures['p50_ms_30']:.2f} ms (p99 {figures['p99_ms_30']:.1f}): "
        f"{figures['ratio_p50']:.2f}× ({figures['target']}, target ≤ 1.5×)"
    )
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
