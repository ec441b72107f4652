"""`make bench`: every benchmark figure, one line each, and bench/results/latest.json.

Each HTTP figure is a ratio against a limit measured in the same run (bench/README.md):

    db_insert_limit   raw single-row INSERTs (asyncpg, 32 connections) and COPY of 100-row batches
    ingest_single     POST /patients/{id}/observations, 32 connections   ≥ 0.20 × INSERT limit,
                                                                         p99 ≤ 100 ms, 0 errors
    stack_floor       the same POSTs to FastAPI + one raw INSERT (bench/floor_app.py): a reference
    framework_peer    the same POSTs to a typical FastAPI + SQLAlchemy ORM insert endpoint
                      (bench/peer_app.py: no auth, audit or policy); ingest_single ≥ 1.0× it
    ingest_batch      100-observation batches                            ≥ 0.50 × COPY-100 rate
    trends_read       GET /patients/{id}/trends against GET /healthz     ≥ 0.30 × healthz,
                      at 10k and (--scale large) 1M observations         p50(1M) ≤ 1.2 × p50(10k)
    analytics_engine  trend + policy evaluations per CPU second, 30 points   ≥ 20,000/s
    policy_write_overhead  (issue 3) a POST with an active course vs without   ≤ 1.5x

--webhook (PostgreSQL): the write figures again, on a copy of the database as the writes found
it, with one webhook registered (bench/webhook.py): ratios, deliveries, the outbox's backlog.

PostgreSQL runs `outcomes serve --workers 2` on a database of its own (outcomes_bench_<pid>_*,
dropped at the end); the embedded SQLite default runs one worker against SQLite's own limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.config import to_async_url
from bench import analytics_engine, databases, dataset, db_limit, peer_app, webhook, write_path
from bench.load import Load, WrkMissing, find_wrk, run_wrk, write_targets
from bench.server import Server, database_cpu_seconds, serve

RESULTS = Path(__file__).resolve().parent / "results"
LARGE_PATIENTS = 10_000
SCALES = {
    # patients with active courses, observations; large: grown to these (PostgreSQL only)
    "default": (300, 10_000, None),
    "large": (300, 10_000, (LARGE_PATIENTS, 1_000_000)),
}


@dataclass
class Target:
    name: str
    value: float
    op: str  # ">=" or "<="
    limit: float
    unit: str = "x"

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        value = f"{self.value:,.2f}" if abs(self.value) < 1000 else f"{self.value:,.0f}"
        limit = f"{self.limit:,.2f}" if abs(self.limit) < 1000 else f"{self.limit:,.0f}"
        return f"{verdict}  {self.name}: {value}{self.unit} (target {self.op} {limit}{self.unit})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": round(self.value, 4),
            "target": f"{self.op} {self.limit:g}",
            "pass": self.passed,
        }


@dataclass
class Run:
    """The options every figure needs, and what has been measured so far."""

    args: argparse.Namespace
    wrk: str
    work: Path
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def say(self, line: str) -> None:
        print(line, flush=True)

    def load(
        self, server: Server, script: str, targets: Path, *, connections: int | None = None
    ) -> Load:
        # PostgreSQL's time, when it is this server's database (not when it merely runs here).
        database_cpu = database_cpu_seconds if server.postgres else lambda: None
        cpu, db_cpu = server.cpu_seconds(), database_cpu()
        result = run_wrk(
            self.wrk,
            server.base,
            script,
            seconds=self.args.seconds if connections is None else max(2, self.args.seconds / 2),
            connections=connections or self.args.connections,
            threads=1 if connections == 1 else 2,
            targets=targets,
        )
        used = server.cpu_seconds() - cpu
        db_after = database_cpu()
        db_used = db_after - db_cpu if db_cpu is not None and db_after is not None else None
        if not result.requests:
            return result
        return replace(
            result,
            cpu_ms=1000 * used / result.requests,
            db_cpu_ms=None if db_used is None else 1000 * db_used / result.requests,
        )


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _summary(loads: Sequence[Load]) -> dict[str, Any]:
    """The median of each figure over the rounds, errors summed, and every round."""
    first_error = next((x.first_error for x in loads if x.first_error), "")
    summary: dict[str, Any] = {
        "per_s": round(_median([x.per_s for x in loads]), 1),
        "p50_ms": round(_median([x.p50_ms for x in loads]), 2),
        "p90_ms": round(_median([x.p90_ms for x in loads]), 2),
        "p99_ms": round(_median([x.p99_ms for x in loads]), 2),
        "server_cpu_ms": round(_median([x.cpu_ms or 0.0 for x in loads]), 3),
        "database_cpu_ms": (
            round(_median([x.db_cpu_ms for x in loads if x.db_cpu_ms is not None]), 3)
            if any(x.db_cpu_ms is not None for x in loads)
            else None
        ),
        "requests": sum(x.requests for x in loads),
        "errors": sum(x.errors for x in loads),
        "rounds": [x.as_dict() for x in loads],
    }
    if first_error:
        summary["first_error"] = first_error
    return summary


def _ms(load: dict[str, Any]) -> str:
    return (
        f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, {load['errors']} errors, "
        f"server CPU {load['server_cpu_ms']:.2f} ms/request"
        + (
            f" (+ database {load['database_cpu_ms']:.2f} ms)"
            if load.get("database_cpu_ms") is not None
            else ""
        )
    )


def _warm(run: Run, server: Server, targets: Path, scripts: Sequence[str]) -> None:
    """A short run of each script: connection pools, statement caches, the OS page cache."""
    for script in scripts:
        run_wrk(run.wrk, server.base, script, seconds=2, connections=8, targets=targets)


# --- Reads: trends against healthz ------------------------------------------------------------


def reads(run: Run, servers: dict[str, Server], targets: Path, prefix: str) -> dict[str, Any]:
    """healthz and trends on each server (one per table size), alternating, for each round;
    and trends on one connection, where latency is the request's own, not queueing."""
    healthz: dict[str, list[Load]] = {size: [] for size in servers}
    trends: dict[str, list[Load]] = {size: [] for size in servers}
    single: dict[str, list[Load]] = {size: [] for size in servers}
    for _ in range(run.args.rounds):
        for size, server in servers.items():
            healthz[size].append(run.load(server, "healthz", targets))
            trends[size].append(run.load(server, "trends", targets))
            single[size].append(run.load(server, "trends", targets, connections=1))
    result: dict[str, Any] = {}
    for size in servers:
        h, t, one = _summary(healthz[size]), _summary(trends[size]), _summary(single[size])
        ratio = _median(
            [b.per_s / a.per_s for a, b in zip(healthz[size], trends[size], strict=True)]
        )
        result[size] = {
            "healthz": h,
            "trends": t,
            "trends_1_connection": one,
            "ratio_to_healthz": round(ratio, 4),
        }
        run.say(f"{prefix} healthz@{size}: {h['per_s']:,.0f} req/s, {_ms(h)}")
        run.say(
            f"{prefix} trends_read@{size}: {t['per_s']:,.0f} req/s, {_ms(t)} "
            f"= {ratio:.2f} × healthz (target ≥ 0.30)"
        )
        run.say(f"{prefix} trends_read@{size}, 1 connection: {_ms(one)}")
        run.targets.append(Target(f"{prefix} trends_read@{size} / healthz", ratio, ">=", 0.30))
        run.targets.append(Target(f"{prefix} trends_read@{size} errors", t["errors"], "<=", 0, ""))
    sizes = list(servers)
    if len(sizes) == 2:
        small, large = (result[s]["trends"] for s in sizes)
        growth = large["p50_ms"] / small["p50_ms"] if small["p50_ms"] else float("inf")
        result["p50_growth"] = round(growth, 4)
        run.say(
            f"{prefix} trends_read p50@{sizes[1]} / p50@{sizes[0]}: {growth:.2f} "
            f"({large['p50_ms']:.1f} / {small['p50_ms']:.1f} ms; target ≤ 1.2)"
        )
        run.targets.append(
            Target(f"{prefix} trends_read p50@{sizes[1]} / p50@{sizes[0]}", growth, "<=", 1.2)
        )
        small, large = (result[s]["trends_1_connection"] for s in sizes)
        growth = large["p50_ms"] / small["p50_ms"] if small["p50_ms"] else float("inf")
        result["p50_growth_1_connection"] = round(growth, 4)
        run.say(
            f"{prefix} trends_read p50@{sizes[1]} / p50@{sizes[0]}, 1 connection: {growth:.2f} "
            f"({large['p50_ms']:.2f} / {small['p50_ms']:.2f} ms; target ≤ 1.2)"
        )
        name = f"{prefix} trends_read p50@{sizes[1]} / p50@{sizes[0]} (1 connection)"
        run.targets.append(Target(name, growth, "<=", 1.2))
    return result


# --- Writes: ingest against the database's own limit ------------------------------------------


def writes(
    run: Run,
    server: Server,
    targets: Path,
    prefix: str,
    limit: Callable[[bool], db_limit.Rate],
    *,
    batch_limit: str,
    p99_target: bool,
    judge: bool = True,
    push: webhook.Probe | None = None,
) -> dict[str, Any]:
    """ingest_single against single-row INSERTs, ingest_batch against 100-row batches
    (``batch_limit`` names how the database takes them: COPY, or one executemany). Targets
    only if ``judge``; with ``push``, what the webhook got over each figure's rounds."""
    result: dict[str, Any] = {}
    for batch, script, limit_name in (
        (False, "ingest_single", "insert_single"),
        (True, "ingest_batch", batch_limit),
    ):
        limits: list[db_limit.Rate] = []
        loads: list[Load] = []
        before = push() if push is not None else None
        for _ in range(run.args.rounds):
            limits.append(limit(batch))
            loads.append(run.load(server, script, targets))
        rows = [x.rows_per_s for x in limits]
        per_s = [x.per_s * (db_limit.BATCH if batch else 1) for x in loads]
        ratio = _median([api / db for api, db in zip(per_s, rows, strict=True)])
        summary = _summary(loads)
        summary["observations_per_s"] = round(_median(per_s), 1)
        summary["ratio_to_limit"] = round(ratio, 4)
        if push is not None and before is not None:
            summary["push"] = webhook.delta(before, push())
        result[limit_name] = {
            "rows_per_s": round(_median(rows), 1),
            "p50_ms": round(_median([x.p50_ms for x in limits]), 2),
            "p99_ms": round(_median([x.p99_ms for x in limits]), 2),
            "rounds": [x.as_dict() for x in limits],
        }
        result[script] = summary
        what = "single-row INSERTs" if not batch else "rows in 100-row batches"
        db = result[limit_name]
        run.say(
            f"{prefix} db_insert_limit ({limit_name}): {db['rows_per_s']:,.0f} {what}/s "
            f"(p50 {db['p50_ms']:.1f} ms, p99 {db['p99_ms']:.1f} ms a statement)"
        )
        if batch:
            run.say(
                f"{prefix} ingest_batch: {summary['observations_per_s']:,.0f} observations/s "
                f"({summary['per_s']:,.1f} batches/s, {_ms(summary)}) "
                f"= {ratio:.2f} × the {limit_name} rate (target ≥ 0.50)"
            )
            if judge:
                run.targets.append(
                    Target(f"{prefix} ingest_batch / {limit_name}", ratio, ">=", 0.50)
                )
                run.targets.append(
                    Target(f"{prefix} ingest_batch errors", summary["errors"], "<=", 0, "")
                )
        else:
            run.say(
                f"{prefix} ingest_single: {summary['per_s']:,.0f} req/s, {_ms(summary)} "
                f"= {ratio:.2f} × db_insert_limit (target ≥ 0.20, "
                f"{'p99 ≤ 100 ms, ' if p99_target else ''}0 errors)"
            )
            if judge:
                run.targets.append(
                    Target(f"{prefix} ingest_single / db_insert_limit", ratio, ">=", 0.20)
                )
                if p99_target:
                    run.targets.append(
                        Target(f"{prefix} ingest_single p99", summary["p99_ms"], "<=", 100, " ms")
                    )
                run.targets.append(
                    Target(f"{prefix} ingest_single errors", summary["errors"], "<=", 0, "")
                )
        if "push" in summary:
            run.say(f"{prefix} {script}: {_push(summary['push'])}")
    return result


def _push(push: dict[str, Any]) -> str:
    return (
        f"{push['events_written']:,} events written, {push['events_delivered']:,} delivered "
        f"({push['delivered_per_s']:,.0f}/s over {push['seconds']:g} s of limit and load "
        f"rounds); at the end {push['pending_at_end']:,} pending in the outbox, the oldest "
        f"{push['oldest_pending_s_at_end']:g} s old, {push['failed_at_end']} failed"
    )


def stack_floor(
    run: Run, url: str, targets: Path, prefix: str, limit: Callable[[bool], db_limit.Rate]
) -> dict[str, Any]:
    """The cheapest write this stack can serve (bench/floor_app.py: the same body model and
    uvicorn, one raw INSERT, nothing else) against the same limit, in alternating rounds: how
    much of ingest_single's distance to the limit is the framework itself. A reference, not a
    target."""
    env = {"BENCH_FLOOR_DSN": databases.asyncpg_dsn(url)}
    app = "bench.floor_app:create_app"
    with serve(url, workers=run.args.workers, env=env, app=app) as floor:
        _warm(run, floor, targets, ("ingest_single",))
        limits: list[db_limit.Rate] = []
        loads: list[Load] = []
        for _ in range(run.args.rounds):
            limits.append(limit(False))
            loads.append(run.load(floor, "ingest_single", targets))
            asyncio.run(db_limit.empty_postgres(url))
    ratio = _median([x.per_s / db.rows_per_s for x, db in zip(loads, limits, strict=True)])
    summary = _summary(loads)
    summary["ratio_to_limit"] = round(ratio, 4)
    run.say(
        f"{prefix} stack_floor: {summary['per_s']:,.0f} req/s, {_ms(summary)} = {ratio:.2f} × "
        "db_insert_limit (reference: FastAPI + uvicorn + one raw INSERT, no service)"
    )
    return summary


def framework_peer(
    run: Run,
    url: str,
    targets: Path,
    prefix: str,
    limit: Callable[[bool], db_limit.Rate],
    service: dict[str, Any] | None,
) -> dict[str, Any]:
    """The framework peer (bench/peer_app.py, issue 21): the typical FastAPI + SQLAlchemy ORM
    insert endpoint, no authentication, audit or policy, served like the service and driven
    by the same load, in alternating rounds with the limit; and the service's single POST
    rate against it (target ≥ 1.0×, moonshot 1.5×)."""
    peer_url = to_async_url(url).render_as_string(hide_password=False)
    asyncio.run(peer_app.create_table(peer_url))
    env = {"BENCH_PEER_URL": peer_url}
    with serve(url, workers=run.args.workers, env=env, app="bench.peer_app:create_app") as peer:
        _warm(run, peer, targets, ("ingest_single",))
        limits: list[db_limit.Rate] = []
        loads: list[Load] = []
        for _ in range(run.args.rounds):
            limits.append(limit(False))
            loads.append(run.load(peer, "ingest_single", targets))
    ratio = _median([x.per_s / db.rows_per_s for x, db in zip(loads, limits, strict=True)])
    summary = _summary(loads)
    summary["ratio_to_limit"] = round(ratio, 4)
    served = (service or {}).get("ingest_single", {}).get("ratio_to_limit")
    line = (
        f"{prefix} framework_peer: {summary['per_s']:,.0f} req/s, {_ms(summary)} = {ratio:.2f} × "
        "db_insert_limit (FastAPI + SQLAlchemy ORM insert, no auth, audit or policy)"
    )
    if served:
        summary["service_to_peer"] = round(served / ratio, 4)
        line += f"; the service's single POST is {served / ratio:.2f}× the peer (target ≥ 1.0)"
        run.targets.append(
            Target(f"{prefix} ingest_single / framework_peer", served / ratio, ">=", 1.0)
        )
    run.say(line)
    return summary


# --- The two databases ------------------------------------------------------------------------


@dataclass
class Loaded:
    url: str
    patient_ids: list[uuid.UUID]
    targets: Path
    counts: dict[str, int]


def _load(run: Run, url: str, patients: int, observations: int) -> Loaded:
    started = time.monotonic()
    data = dataset.cohort(patients, observations)
    asyncio.run(dataset.write(url, data))
    asyncio.run(dataset.vacuum_analyze(url))
    ids = [row["id"] for row in data.patients]
    tokens = asyncio.run(dataset.issue_tokens(url, ids))
    targets = write_targets(run.work / f"targets-{uuid.uuid4().hex[:8]}", ids, tokens)
    counts = asyncio.run(dataset.counts(url))
    run.say(
        f"dataset: {counts['patients']:,} patients with active courses, "
        f"{counts['treatment_sessions']:,} sessions, {counts['observations']:,} observations "
        f"(loaded in {time.monotonic() - started:.1f} s; one patient token each)"
    )
    return Loaded(url, ids, targets, counts)


def postgres_suite(run: Run) -> dict[str, Any]:
    args = run.args
    prefix = "[postgresql]"
    patients, observations, large = SCALES[args.scale]
    patients = args.patients or patients
    observations = args.base_observations or observations
    if args.observations:
        large = (LARGE_PATIENTS, args.observations)
    result: dict[str, Any] = {"workers": args.workers}
    with databases.postgres_databases(args.postgres, keep=args.keep) as created:
        base_name = databases.bench_database_name("base")
        url = databases.create_postgres(args.postgres, base_name)
        created.append(base_name)
        base = _load(run, url, patients, observations)
        result["dataset"] = base.counts
        urls = {_size(observations): url}
        names = {_size(observations): base_name}
        if large:
            started = time.monotonic()
            big_name = databases.bench_database_name("large")
            big = databases.create_postgres(args.postgres, big_name, template=base_name)
            created.append(big_name)
            asyncio.run(dataset.top_up(big, base.patient_ids, large[0], large[1], progress=run.say))
            asyncio.run(dataset.vacuum_analyze(big))
            counts = asyncio.run(dataset.counts(big))
            result["dataset_large"] = counts
            urls[_size(counts["observations"])] = big
            names[_size(counts["observations"])] = big_name
            took = time.monotonic() - started
            run.say(
                f"dataset (large): {counts['patients']:,} patients, "
                f"{counts['observations']:,} observations (grown in {took:.0f} s)"
            )
        # Each server holds up to 2 × (10 + 10 + 10) connections (SQLAlchemy's pool with its
        # overflow, and the plain asyncpg pool): only the servers a phase measures run, so the
        # limit's own 32 connections fit under PostgreSQL's default max_connections (100).
        with ExitStack() as reading:
            servers = {
                size: reading.enter_context(serve(db, workers=args.workers, migrate=False))
                for size, db in urls.items()
            }
            for server in servers.values():
                _warm(run, server, base.targets, ("healthz", "trends"))
            result["plans"] = {
                size: asyncio.run(_trends_plan(db, base.patient_ids[0]))
                for size, db in urls.items()
            }
            result["observations_mb"] = {
                size: asyncio.run(_observations_mb(db)) for size, db in urls.items()
            }
            result["reads"] = reads(run, servers, base.targets, prefix)
        # Writes go to the largest table (the benchmark's own patients are in every one).
        size, write_url = list(urls.items())[-1]
        result["writes_at"] = size
        asyncio.run(db_limit.prepare_postgres(write_url))
        hooked_url = None
        if args.webhook:
            # The database as the writes find it, for the same writes with a webhook after them.
            hooked_name = databases.bench_database_name("webhook")
            hooked_url = databases.create_postgres(args.postgres, hooked_name, names[size])
            created.append(hooked_name)

        def limit_on(url: str) -> Callable[[bool], db_limit.Rate]:
            def limit(batch: bool) -> db_limit.Rate:
                try:
                    return db_limit.postgres_rate(
                        url, base.patient_ids, connections=args.connections,
                        seconds=args.seconds, copy=batch,
                    )  # fmt: skip
                finally:
                    asyncio.run(db_limit.empty_postgres(url))

            return limit

        limit = limit_on(write_url)
        with serve(write_url, workers=args.workers, migrate=False) as server:
            _warm(run, server, base.targets, ("ingest_single",))
            result["writes"] = writes(
                run, server, base.targets, prefix, limit, batch_limit="copy_100", p99_target=True
            )
        result["stack_floor"] = stack_floor(run, write_url, base.targets, prefix, limit)
        result["framework_peer"] = framework_peer(
            run, write_url, base.targets, prefix, limit, result.get("writes")
        )
        asyncio.run(db_limit.empty_postgres(write_url, drop=True))
        if hooked_url is not None:
            result["webhook"] = webhook_writes(
                run, hooked_url, base, limit_on(hooked_url), result["writes"]
            )
            asyncio.run(db_limit.empty_postgres(hooked_url, drop=True))
    return result


def webhook_writes(
    run: Run,
    url: str,
    base: Loaded,
    limit: Callable[[bool], db_limit.Rate],
    plain: dict[str, Any],
) -> dict[str, Any]:
    """The write figures with one webhook (every event type) registered through the admin
    API to a loopback receiver, on a copy of the database the plain writes started from; then
    how long the dispatcher takes to deliver what is left. ``plain``: the figures without a
    subscription, measured earlier in the same run."""
    prefix = "[postgresql+webhook]"
    admin = asyncio.run(dataset.issue_staff_token(url, "admin"))
    with (
        webhook.receiving() as receiver,
        serve(url, workers=run.args.workers, migrate=False, env=webhook.SERVER_ENV) as server,
    ):
        webhook_id = webhook.register(server.base, admin, receiver)
        run.say(f"{prefix} webhook {webhook_id}: {receiver.url}, every event type, 204s")
        _warm(run, server, base.targets, ("ingest_single",))
        probe = webhook.Probe(url, server.base, receiver)
        result = writes(
            run, server, base.targets, prefix, limit,
            batch_limit="copy_100", p99_target=True, judge=False, push=probe,
        )  # fmt: skip
        result["drain"] = drained = webhook.drain(probe, run.args.webhook_drain)
    result["webhook"] = {"id": webhook_id, "url": receiver.url, "events": webhook.EVENTS}
    left = drained["pending_left"]
    run.say(
        f"{prefix} after the load: "
        + (
            f"nothing pending {drained['drained_in_s']:g} s later"
            if left == 0
            else f"{left:,} still pending after {drained['waited_s']:g} s"
        )
        + f"; {drained['events_delivered']:,} of {drained['events']:,} events delivered, "
        f"{drained['receiver_posts']:,} POSTs received"
    )
    for script in ("ingest_single", "ingest_batch"):
        with_hook = result[script]["ratio_to_limit"]
        without = plain[script]["ratio_to_limit"]
        change = with_hook / without - 1 if without else 0.0
        result[script]["ratio_vs_no_subscription"] = (
            round(with_hook / without, 4) if without else None
        )
        run.say(
            f"{prefix} {script}: {with_hook:.2f} × its limit with the webhook, "
            f"{without:.2f} × without a subscription ({change:+.0%})"
        )
    return result


async def _observations_mb(url: str) -> float:
    """The observations table with its indexes, in MB (what the working set grows with)."""
    import asyncpg

    conn = await asyncpg.connect(databases.asyncpg_dsn(url))
    try:
        size: int = await conn.fetchval("SELECT pg_total_relation_size('observations')")
    finally:
        await conn.close()
    return round(size / 2**20, 1)


async def _trends_plan(url: str, patient_id: uuid.UUID) -> str:
    """How PostgreSQL reads one patient's trend values (the query of AnalyticsRepository)."""
    import asyncpg

    conn = await asyncpg.connect(databases.asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) "
            "SELECT instrument, recorded_at, value FROM observations "
            "WHERE patient_id = $1 AND recorded_at >= now() - interval '70 days' "
            "ORDER BY recorded_at",
            patient_id,
        )
    finally:
        await conn.close()
    return " | ".join(r[0].strip() for r in rows)


def _size(observations: int) -> str:
    if observations >= 1_000_000:
        return f"{observations / 1_000_000:g}M"
    return f"{observations / 1000:g}k"


def sqlite_suite(run: Run) -> dict[str, Any]:
    args = run.args
    prefix = "[sqlite]"
    patients, observations, _ = SCALES["default"]
    patients = args.patients or patients
    observations = args.base_observations or observations
    result: dict[str, Any] = {"workers": 1}
    with databases.sqlite_database(keep=args.keep) as url:
        path = url.removeprefix("sqlite:///")
        base = _load(run, url, patients, observations)
        result["dataset"] = base.counts
        db_limit.prepare_sqlite(path)
        with serve(url, workers=1, migrate=False) as server:
            _warm(run, server, base.targets, ("healthz", "trends"))
            result["reads"] = reads(run, {_size(observations): server}, base.targets, prefix)
            _warm(run, server, base.targets, ("ingest_single",))

            def limit(batch: bool) -> db_limit.Rate:
                try:
                    return db_limit.sqlite_rate(
                        path, base.patient_ids, seconds=args.seconds, batch=batch
                    )
                finally:
                    db_limit.empty_sqlite(path)

            result["writes"] = writes(
                run, server, base.targets, prefix, limit, batch_limit="insert_100", p99_target=False
            )
        db_limit.empty_sqlite(path, drop=True)
    return result


# --- The whole run ----------------------------------------------------------------------------


def _policy_overhead(run: Run, pg_ok: bool) -> None:
    """Issue 3's figure on a database of its own (PostgreSQL when there is one)."""

    @contextmanager
    def database() -> Iterator[str]:
        if pg_ok:
            name = databases.bench_database_name("policy")
            with databases.postgres_databases(run.args.postgres, keep=run.args.keep) as created:
                url = databases.create_postgres(run.args.postgres, name)
                created.append(name)
                yield url
        else:
            with databases.sqlite_database(keep=run.args.keep) as url:
                yield url

    with database() as url:
        overhead = asyncio.run(
            write_path.run(url, patients=30, requests=300, rounds=5, concurrency=4)
        )
    run.say(write_path.describe(overhead))
    run.figures["policy_write_overhead"] = {k: round(v, 3) for k, v in overhead.items()}
    run.figures["policy_write_overhead"]["database"] = "postgresql" if pg_ok else "sqlite"
    run.targets.append(Target("policy_write_overhead (issue 3)", overhead["ratio"], "<=", 1.5))


def _analytics(run: Run) -> None:
    figures = analytics_engine.main()
    run.figures["analytics_engine"] = figures
    run.targets.append(
        Target(
            "analytics_engine evaluations per CPU second (30 points)",
            figures["evaluations_per_cpu_s_30"],
            ">=",
            20_000,
            "/s",
        )
    )
    run.targets.append(
        Target(
            "analytics_engine CPU per evaluation (60 points, issue 3)",
            figures["cpu_ms_per_evaluation_60"],
            "<=",
            0.5,
            " ms",
        )
    )


def history_row(report: dict[str, Any]) -> str:
    """A row for the history table in bench/README.md."""
    figures = report["figures"]

    def pg(*keys: str) -> Any:
        node: Any = figures.get("postgresql", {})
        for key in keys:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return node

    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, int | float) else "—"

    single, batch = pg("writes", "ingest_single"), pg("writes", "ingest_batch")
    reads = pg("reads")
    sizes = [value for value in reads.values() if isinstance(value, dict)]
    small: dict[str, Any] = sizes[0] if sizes else {}
    large: dict[str, Any] = sizes[1] if len(sizes) > 1 else {}
    sqlite = figures.get("sqlite", {}).get("writes", {}).get("ingest_single", {})
    sqlite_reads: dict[str, Any] = next(
        iter(figures.get("sqlite", {}).get("reads", {}).values()), {}
    )
    load = report["machine"]["load_before"]
    copy_rate = pg("writes", "copy_100", "rows_per_s")
    trends_p50 = small.get("trends", {}).get("p50_ms")
    cells = [
        report["at"][:16].replace("T", " "),
        f"{report['scale']}, {report['rounds']}×{report['seconds']:g} s, load {load[0]:g}",
        num(pg("writes", "insert_single", "rows_per_s"), ",.0f"),
        f"{num(single.get('per_s'), ',.0f')} ({num(single.get('ratio_to_limit'), '.2f')}×, "
        f"p99 {num(single.get('p99_ms'), '.0f')} ms, {single.get('errors', '—')} err; "
        f"stack floor {num(pg('stack_floor', 'ratio_to_limit'), '.2f')}×)",
        f"{num(batch.get('observations_per_s'), ',.0f')} / {num(copy_rate, ',.0f')}"
        f" ({num(batch.get('ratio_to_limit'), '.2f')}×)",
        f"{num(small.get('ratio_to_healthz'), '.2f')}× (p50 {num(trends_p50, '.1f')} ms)",
        f"{num(large.get('ratio_to_healthz'), '.2f')}× (p50 ×{num(reads.get('p50_growth'), '.2f')})"
        if large
        else "—",
        f"{num(sqlite.get('ratio_to_limit'), '.2f')}× / "
        f"{num(sqlite_reads.get('ratio_to_healthz'), '.2f')}×",
        num(figures.get("analytics_engine", {}).get("evaluations_per_cpu_s_30"), ",.0f"),
        num(figures.get("policy_write_overhead", {}).get("ratio"), ".2f") + "x",
    ]
    return "| " + " | ".join(cells) + " |"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="default",
        help="large: also grow a copy to 10k patients / 1M observations (PostgreSQL)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES", databases.DEFAULT_POSTGRES),
        help="PostgreSQL server URL (its databases outcomes_bench_<pid>_* are created "
        "and dropped); default %(default)s",
    )
    parser.add_argument(
        "--observations",
        type=int,
        help="grow a copy to this many observations (and 10,000 patients) for the trends "
        "comparison: --scale large is --observations 1000000 (PostgreSQL)",
    )
    parser.add_argument(
        "--patients", type=int, help="the benchmark's patients, each with an active course (300)"
    )
    parser.add_argument(
        "--base-observations", type=int, help="their observations, loaded first (10,000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=8, help="each measurement (default %(default)s)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating rounds of each limit/figure pair; medians (default %(default)s)",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="PostgreSQL server workers")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["postgresql", "sqlite", "analytics", "policy"],
        help="run only these parts",
    )
    parser.add_argument(
        "--install-wrk", action="store_true", help="apt-get install wrk if missing (root)"
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="PostgreSQL: the write figures again with one webhook registered (a loopback "
        "receiver): ratios, deliveries and the outbox's backlog",
    )
    parser.add_argument(
        "--webhook-drain",
        type=float,
        default=60,
        help="with --webhook: wait at most this long for the outbox to empty after the load "
        "(default %(default)s s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases (for inspection)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: servers stopped, benchmark databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parts = set(args.only or ["postgresql", "sqlite", "analytics", "policy"])
    started = time.monotonic()
    wrk = ""
    if parts & {"postgresql", "sqlite"}:
        try:
            wrk = find_wrk(install=args.install_wrk)
        except WrkMissing as exc:
            print(exc, file=sys.stderr)
            return 2
    load_before = [round(x, 2) for x in os.getloadavg()]
    run = Run(args, wrk, Path(tempfile.mkdtemp(prefix="outcomes-bench-")))
    run.say(f"machine: {os.cpu_count()} CPUs, load average {load_before} before the run")
    pg_problem = databases.postgres_reachable(args.postgres)
    if "analytics" in parts:
        _analytics(run)
    if "postgresql" in parts:
        if pg_problem:
            run.say(f"[postgresql] skipped: {args.postgres} unreachable ({pg_problem})")
        else:
            run.figures["postgresql"] = postgres_suite(run)
    if "sqlite" in parts:
        run.figures["sqlite"] = sqlite_suite(run)
    if "policy" in parts:
        _policy_overhead(run, pg_ok=pg_problem is None)
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "connections": args.connections,
        "runtime_s": round(time.monotonic() - started),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "figures": run.figures,
        "targets": {t.name: t.as_dict() for t in run.targets},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    run.say("")
    for target in run.targets:
        run.say(target.line())
    failed = sum(not t.passed for t in run.targets)
    run.say(
        f"{len(run.targets) - failed} of {len(run.targets)} targets met; {report['runtime_s']} s"
    )
    run.say(f"written to {args.output}")
    run.say(f"history row for bench/README.md:\n{history_row(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
