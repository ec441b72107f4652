"""What each statement of the hot paths costs, one at a time: the client's CPU, the database
backend's CPU and the wall time, on one connection with no other load.

    python -m bench.statements              # PostgreSQL at 127.0.0.1 (as make bench)
    python -m bench.statements --count 2000

Loads the default dataset (300 patients, 10k observations) into a fresh database, runs each
statement ``--count`` times on one asyncpg connection (uvloop, as the server) and divides:
the client's CPU (this process), the backend's (its /proc entry; the database must run on this
machine) and the wall time. ``SELECT 1`` is the round trip alone. The audit row's INSERT runs
with ``synchronous_commit`` on (the service's setting) and off, to show what waiting for the
WAL flush costs a read's audit row. Every figure comes from the same run; compare them with
each other, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from app.analytics.repository import window_days
from app.audit.service import AUDIT_COLUMNS as INSERT_EVENT_COLUMNS
from app.audit.service import INSERT_EVENT_SQL
from app.outbox import events
from app.recording import pg_store
from app.recording.store import NOTHING, PlannedEvent
from bench import databases, dataset

# What db_insert_limit inserts: an observation as POST /observations stores it.
_PLAIN_INSERT = """
INSERT INTO observations (id, patient_id, instrument, value, recorded_at, received_at, context,
                          source, note)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
# The POST's write when the policy changes nothing (no frequency change, no new
# recommendation): the observation, its audit row and its observation.created event.
_NO_CHANGES = pg_store.change_arrays([]) | pg_store.recommendation_arrays(NOTHING)


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    label: str, backend: int, count: int, statement: Callable[[], Awaitable[object]]
) -> dict[str, float]:
    for _ in range(min(200, count)):  # prepared statements, caches
        await statement()
    cpu, wall, db = time.process_time(), time.perf_counter(), _backend_cpu(backend)
    for _ in range(count):
        await statement()
    figures = {
        "client_us": (time.process_time() - cpu) / count * 1e6,
        "backend_us": (_backend_cpu(backend) - db) / count * 1e6,
        "wall_us": (time.perf_counter() - wall) / count * 1e6,
    }
    print(
        f"{label:42s} client {figures['client_us']:6.1f} µs   backend "
        f"{figures['backend_us']:6.1f} µs   wall {figures['wall_us']:6.1f} µs",
        flush=True,
    )
    return figures


async def _run(url: str, count: int) -> None:
    conn = await asyncpg.connect(databases.asyncpg_dsn(url))
    try:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        patients = [r[0] for r in await conn.fetch("SELECT patient_id FROM courses")]
        days = window_days()

        def observation() -> list[Any]:
            now = datetime.now(UTC)
            return [uuid.uuid4(), random.choice(patients), "pain-nrs", 5.0, now, now]

        def audit_row(patient_id: uuid.UUID) -> list[Any]:
            # AUDIT_COLUMNS' order; the last two: no OAuth client, no device.
            return [
                uuid.uuid4(), datetime.now(UTC), None, "clinician", "create", "observation",
                str(patient_id), patient_id, "allowed", 201, uuid.uuid4().hex, None, None,
            ]  # fmt: skip

        record_one = pg_store._RECORD_ONE
        active_inputs = pg_store._PATIENT_INPUTS
        columns = ("id", "patient_id", "instrument", "value", "recorded_at", "received_at")
        audit_columns = [f"audit_{name}" for name in INSERT_EVENT_COLUMNS]

        async def record(event: bool = True) -> None:
            row = dict(zip(columns, observation(), strict=True))
            row |= {"course_id": None, "session_id": None, "context": None, "source": None}
            created = PlannedEvent(events.observation_created(row), "stored", row["id"])
            row |= {"note": None, **_NO_CHANGES, **pg_store.event_arrays([created] * event)}
            row |= dict(zip(audit_columns, audit_row(row["patient_id"]), strict=True))
            await conn.fetch(record_one.sql, *record_one.args(row))

        async def policy_read() -> None:
            params = {"patient_id": random.choice(patients), "window_days": days}
            await conn.fetch(active_inputs.sql, *active_inputs.args(params))

        async def audit() -> None:
            await conn.execute(INSERT_EVENT_SQL, *audit_row(random.choice(patients)))

        print(f"{count:,} of each, one connection, one at a time", flush=True)
        await _measure(
            "SELECT 1 (the round trip)", backend, count, lambda: conn.fetchval("SELECT 1")
        )
        await _measure("PG_PATIENT_INPUTS (the policy's read)", backend, count, policy_read)
        await _measure(
            "INSERT of db_insert_limit's row",
            backend,
            count,
            lambda: conn.execute(_PLAIN_INSERT, *observation(), None, None, None),
        )
        await _measure("PG_RECORD_ONE (POST's write, no change)", backend, count, record)
        await _measure(
            "PG_RECORD_ONE, no event proposed", backend, count, lambda: record(event=False)
        )
        await _measure("audit row INSERT, synchronous_commit on", backend, count, audit)
        await conn.execute("SET synchronous_commit = off")
        await _measure("audit row INSERT, synchronous_commit off", backend, count, audit)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--count", type=int, default=4000)
    args = parser.parse_args()
    name = databases.bench_database_name("statements")
    url = databases.create_postgres(args.postgres, name)
    try:
        asyncio.run(dataset.write(url, dataset.cohort(300, 10_000)))
        asyncio.run(dataset.vacuum_analyze(url))
        uvloop.run(_run(url, args.count))
    finally:
        databases.drop_postgres(args.postgres, name)


if __name__ == "__main__":
    main()
