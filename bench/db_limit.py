"""db_insert_limit: what the database itself does with observation-shaped rows, no service.

The rows go to ``bench_observations``, a copy of ``observations`` with the same columns,
CHECK constraints, indexes and the foreign key to ``patients`` (so the limit pays for what
an API insert pays for in the database), emptied after each measurement so the service's own
table, and the trends read from it, are not changed by it.

- PostgreSQL: single-row INSERTs (each its own transaction, as one API request is) with
  asyncpg at ``connections`` connections, and COPY of 100-row batches. The client runs in
  ``processes`` processes so that Python is not what limits it.
- SQLite: single-row INSERTs and 100-row executemany transactions through sqlite3 on one
  connection (SQLite has one writer), with the service's settings: WAL, synchronous=NORMAL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.databases import asyncpg_dsn

TABLE = "bench_observations"
COLUMNS = (
    "id", "patient_id", "instrument", "value", "recorded_at", "received_at",
    "course_id", "session_id", "context", "source", "note",
)  # fmt: skip
_NAMES = ", ".join(COLUMNS)
INSERT = f"INSERT INTO {TABLE} ({_NAMES}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"  # noqa: S608
SQLITE_INSERT = f"INSERT INTO {TABLE} ({_NAMES}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
BATCH = 100


@dataclass(frozen=True, slots=True)
class Rate:
    """Rows per second, with the latency of one operation (a row, or a batch for COPY)."""

    rows_per_s: float
    ops: int
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float]:
        return {
            "rows_per_s": round(self.rows_per_s, 1),
            "operations": self.ops,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
        }


def _row(patient_id: uuid.UUID, k: int) -> tuple[Any, ...]:
    """What `POST /observations` stores: a pain score recorded now, no course or session."""
    now = datetime.now(UTC)
    return (
        uuid.uuid4(),
        patient_id,
        "pain-nrs",
        float(k % 11),
        now,
        now,
        None,
        None,
        None,
        None,
        None,
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- PostgreSQL ----------------------------------------------------------------------------


async def prepare_postgres(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {TABLE}; "
            f"CREATE TABLE {TABLE} (LIKE observations INCLUDING ALL); "
            f"ALTER TABLE {TABLE} ADD FOREIGN KEY (patient_id) REFERENCES patients (id)"
        )
    finally:
        await conn.close()


async def empty_postgres(url: str, drop: bool = False) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}" if drop else f"TRUNCATE {TABLE}")
    finally:
        await conn.close()


async def _drive(
    dsn: str,
    patient_ids: Sequence[uuid.UUID],
    connections: int,
    start_at: float,
    stop_at: float,
    copy: bool,
) -> tuple[int, list[float]]:
    """One client process: (operations done between start_at and stop_at, their latencies)."""
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    done = 0
    latencies: list[float] = []

    async def worker(conn: asyncpg.Connection, offset: int) -> None:
        nonlocal done
        k = offset
        while (now := time.monotonic()) < stop_at:
            if copy:
                records = [
                    _row(patient_ids[(k + j) % len(patient_ids)], k + j) for j in range(BATCH)
                ]
                began = time.perf_counter()
                await conn.copy_records_to_table(TABLE, records=records, columns=COLUMNS)
            else:
                row = _row(patient_ids[k % len(patient_ids)], k)
                began = time.perf_counter()
                await conn.execute(INSERT, *row)
            if now >= start_at:  # the first second warms connections and caches up
                done += 1
                latencies.append(time.perf_counter() - began)
            k += connections

    try:
        await asyncio.gather(*(worker(c, i) for i, c in enumerate(conns)))
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return done, latencies


def _process(args: tuple[str, list[uuid.UUID], int, float, float, bool]) -> tuple[int, list[float]]:
    import uvloop

    dsn, ids, connections, start_in, seconds, copy = args
    start_at = time.monotonic() + start_in
    return uvloop.run(_drive(dsn, ids, connections, start_at, start_at + seconds, copy))


def postgres_rate(
    url: str,
    patient_ids: Sequence[uuid.UUID],
    *,
    connections: int,
    seconds: float,
    copy: bool,
    processes: int = 2,
) -> Rate:
    """Single-row INSERTs (copy=False) or COPY of 100-row batches at ``connections``."""
    dsn = asyncpg_dsn(url)
    per = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    jobs = [(dsn, list(patient_ids), n, 1.5, seconds, copy) for n in per if n]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
        results = list(pool.map(_process, jobs))
    ops = sum(n for n, _ in results)
    latencies = [x for _, lat in results for x in lat]
    rows = ops * (BATCH if copy else 1)
    return Rate(
        rows / seconds, ops, _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
    )


# --- SQLite --------------------------------------------------------------------------------


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def prepare_sqlite(path: str) -> None:
    """``bench_observations`` from the DDL of ``observations`` (constraints and indexes)."""
    conn = _sqlite_connect(path)
    try:
        ddl = [
            sql
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'observations' AND sql IS NOT NULL"
            )
        ]
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        for sql in sorted(ddl, key=lambda s: not s.upper().startswith("CREATE TABLE")):
            conn.execute(sql.replace("observations", TABLE))
    finally:
        conn.close()


def empty_sqlite(path: str, drop: bool = False) -> None:
    conn = _sqlite_connect(path)
    try:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}" if drop else f"DELETE FROM {TABLE}")  # noqa: S608
    finally:
        conn.close()


def _sqlite_row(patient_id: uuid.UUID, k: int) -> tuple[Any, ...]:
    """The same row as the service stores it on SQLite: hex ids, naive UTC timestamps."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return (
        uuid.uuid4().hex,
        patient_id.hex,
        "pain-nrs",
        float(k % 11),
        now,
        now,
        None,
        None,
        None,
        None,
        None,
    )


def sqlite_rate(
    path: str, patient_ids: Sequence[uuid.UUID], *, seconds: float, batch: bool
) -> Rate:
    """Single-row INSERT transactions, or 100-row executemany transactions, on one connection."""
    conn = _sqlite_connect(path)
    ops, k, latencies = 0, 0, []
    try:
        start = time.monotonic() + 0.5
        stop = start + seconds
        while (now := time.monotonic()) < stop:
            began = time.perf_counter()
            if batch:
                rows = [
                    _sqlite_row(patient_ids[(k + j) % len(patient_ids)], k + j)
                    for j in range(BATCH)
                ]
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(SQLITE_INSERT, rows)
                conn.execute("COMMIT")
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(SQLITE_INSERT, _sqlite_row(patient_ids[k % len(patient_ids)], k))
                conn.execute("COMMIT")
            if now >= start:
                ops += 1
                latencies.append(time.perf_counter() - began)
            k += BATCH if batch else 1
    finally:
        conn.close()
    rows_done = ops * (BATCH if batch else 1)
    return Rate(
        rows_done / seconds,
        ops,
        _percentile(latencies, 0.5) * 1000,
        _percentile(latencies, 0.99) * 1000,
    )


__all__ = ["Rate", "postgres_rate", "prepare_postgres", "prepare_sqlite", "sqlite_rate"]
