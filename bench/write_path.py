"""What the policy costs on the write path: one observation POST with and without an active course.

Starts `outcomes serve`, creates two groups of patients: one without a course, one with an
active course and a 60-point pain history, then times single-observation POSTs for each group
in alternating rounds (so drift on a shared machine hits both alike). Issue 3's target: a POST
on an active course costs at most 1.5x the same POST without a course.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.dataset import issue_staff_token
from bench.server import serve

API = "/api/v1"


async def _post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], expect: int = 201
) -> Any:
    response = await client.post(path, json=body)
    if response.status_code != expect:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
    return response.json()


async def seed(client: httpx.AsyncClient, patients: int) -> tuple[list[str], list[str]]:
    now = datetime.now(UTC)
    plain, treated = [], []
    for i in range(patients):
        plain.append((await _post(client, f"{API}/patients", {}))["id"])
        pid = (await _post(client, f"{API}/patients", {}))["id"]
        start = (now - timedelta(days=56)).date().isoformat()
        course = await _post(
            client, f"{API}/patients/{pid}/courses",
            {"indication": "spondylosis", "region": "lumbar", "technique": "paravertebral",
             "start_date": start, "adjustment": "confirm"},
        )  # fmt: skip
        for d in (55, 53, 51, 48, 46, 44):
            await _post(
                client,
                f"{API}/courses/{course['id']}/sessions",
                {"performed_at": (now - timedelta(days=d)).isoformat()},
            )
        history = [
            {
                "instrument": "pain-nrs",
                "value": 6 + (i + k) % 3,
                "recorded_at": (now - timedelta(days=57 - k * 0.9)).isoformat(),
            }
            for k in range(60)
        ]
        await _post(
            client,
            f"{API}/patients/{pid}/observations/batch",
            {"observations": history},
            expect=200,
        )
        treated.append(pid)
    return plain, treated


async def timed_posts(
    base: str, patient_ids: list[str], requests: int, concurrency: int, token: str
) -> float:
    """Seconds per request at the given concurrency."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for k in range(requests):
        queue.put_nowait(patient_ids[k % len(patient_ids)])

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            pid = queue.get_nowait()
            body = {
                "instrument": "pain-nrs",
                "value": 6,
                "recorded_at": datetime.now(UTC).isoformat(),
            }
            await _post(client, f"{API}/patients/{pid}/observations", body)

    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=30, headers=headers
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return (time.perf_counter() - started) / requests


async def run(
    database_url: str, patients: int, requests: int, rounds: int, concurrency: int
) -> dict[str, float]:
    with serve(database_url) as server:
        base = server.base
        # One clinician token: what a clinic's front end sends (the token cache keeps it).
        token = await issue_staff_token(database_url)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
            plain, treated = await seed(client, patients)
        await timed_posts(base, plain + treated, 200, concurrency, token)  # warm-up
        without, with_course = [], []
        for _ in range(rounds):
            without.append(await timed_posts(base, plain, requests, concurrency, token))
            with_course.append(await timed_posts(base, treated, requests, concurrency, token))
    t0, t1 = statistics.median(without), statistics.median(with_course)
    return {"post_ms_without_course": t0 * 1000, "post_ms_with_course": t1 * 1000, "ratio": t1 / t0}


def describe(result: dict[str, float]) -> str:
    return (
        f"policy_write_overhead: {result['ratio']:.2f}x "
        f"({result['post_ms_with_course']:.2f} ms per POST with an active course vs "
        f"{result['post_ms_without_course']:.2f} ms without; target ≤ 1.5x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    result = asyncio.run(run(url, args.patients, args.requests, args.rounds, args.concurrency))
    print(describe(result))
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()
