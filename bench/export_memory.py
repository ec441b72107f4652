"""Memory of a FHIR Bulk Data export: the server's RSS while one large ndjson file streams.

Standalone (not run by CI): creates a scratch PostgreSQL database, migrates it, loads N
observations (spread over 1,000 patients) with one INSERT … SELECT generate_series, starts
`outcomes serve`, kicks off `$export?_type=Observation` with an integration token, downloads
the file to nowhere while sampling the server's VmRSS from /proc, and prints lines, seconds,
lines/s and RSS before / peak during / after. The database is dropped at the end.

    .venv/bin/python -m bench.export_memory --observations 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import httpx

from app.core.migrations import upgrade
from bench.server import serve

PG = "postgresql://postgres@127.0.0.1:5432"
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class RssSampler(threading.Thread):
    """The peak RSS of ``pid``, sampled every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def load(url: str, observations: int, patients: int = 1000) -> None:
    """``patients`` patients and ``observations`` pain-nrs observations received over the
    past year, in one statement each."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            INSERT INTO patients (id, name, created_at, updated_at)
            SELECT gen_random_uuid(), 'Bench ' || g, now() - interval '400 days',
                   now() - interval '400 days'
            FROM generate_series(1, $1) AS g
            """,
            patients,
        )
        await conn.execute(
            """
            WITH p AS (SELECT array_agg(id) AS ids FROM patients)
            INSERT INTO observations
                (id, patient_id, instrument, value, recorded_at, received_at, source)
            SELECT gen_random_uuid(), p.ids[1 + g % array_length(p.ids, 1)], 'pain-nrs',
                   g % 11,
                   now() - interval '366 days' + g * interval '1 second' * (31536000.0 / $1),
                   now() - interval '366 days' + g * interval '1 second' * (31536000.0 / $1)
                       + interval '1 minute',
                   'patient'
            FROM p, generate_series(1, $1) AS g
            """,
            observations,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def issue_token(database_url: str) -> str:
    env = os.environ | {"OUTCOMES_DATABASE_URL": database_url}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "tokens", "create", "--role", "integration"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()

    name = f"outcomes_bench_export_{os.getpid()}"
    url = f"{PG}/{name}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        upgrade(url)
        started = time.monotonic()
        asyncio.run(load(url, args.observations))
        print(f"loaded {args.observations:,} observations in {time.monotonic() - started:.1f} s")
        token = issue_token(url)
        with serve(url, migrate=False) as server:
            pid = server.worker_pids()[0]
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=120) as client:
                # Warm up (imports, pools, first queries) so "before" is the idle steady state.
                client.get("/fhir/R4/Observation", params={"_count": 50})
                before = rss_bytes(pid)
                kick = client.get(
                    "/fhir/R4/$export",
                    params={"_type": "Observation"},
                    headers={"Prefer": "respond-async"},
                )
                kick.raise_for_status()
                manifest = client.get(kick.headers["content-location"]).json()
                url_file = manifest["output"][0]["url"]
                sampler = RssSampler(pid)
                sampler.start()
                lines = size = 0
                started = time.monotonic()
                with client.stream("GET", url_file) as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes():
                        lines += chunk.count(b"\n")
                        size += len(chunk)
                seconds = time.monotonic() - started
                peak = sampler.stop()
                time.sleep(1)
                after = rss_bytes(pid)
        print(f"lines        {lines:,} ({size / MIB:,.0f} MiB of ndjson)")
        print(f"seconds      {seconds:.1f}")
        print(f"lines/s      {lines / seconds:,.0f}")
        print(
            f"server RSS   before {before / MIB:.1f} MiB, peak during {peak / MIB:.1f} MiB "
            f"({sampler.samples} samples), after {after / MIB:.1f} MiB"
        )
        if lines != args.observations:
            print(f"MISMATCH: expected {args.observations:,} lines", file=sys.stderr)
            return 1
        return 0
    finally:
        if not args.keep:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    raise SystemExit(main())
