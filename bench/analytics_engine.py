"""CPU cost of one trend + policy evaluation, in one process (no I/O).

Prints evaluations per second for 30-point series (issue 6 target: ≥ 20,000/s on one core),
CPU milliseconds per evaluation for 60-point series (issue 3 target: < 0.5 ms), and, without a
target, for 300 and 700 points: the long windows that repeated 100-value batches grow (the
statistics are quadratic in the points). "On one
core" is measured as evaluations per second of the process's CPU time: on a shared machine
the wall clock also counts the time the core spent on other processes (both are reported).
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, date, datetime, timedelta

from app.analytics.policy import CourseState, evaluate
from app.analytics.registry import registry
from app.analytics.trends import Point, instrument_trend
from app.observations.catalogue import BY_CODE

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
START = date(2026, 4, 1)
NRS = BY_CODE["pain-nrs"]
PARAMS = registry()["standard-v1"]
STATE = CourseState(
    status="active", adjustment="auto", sessions_per_week=3, sessions_done=10, max_sessions=None,
    start_date=START, last_change_source="initial", last_change_at=NOW - timedelta(days=60),
)  # fmt: skip


def series(n: int, rng: random.Random) -> list[Point]:
    """A responder's pain scores over 8 weeks: baseline 8 drifting down to about 3."""
    t0 = datetime(2026, 3, 28, 9, tzinfo=UTC)
    return [
        Point(
            t0 + timedelta(hours=i * 24 * 56 / n),
            float(max(0, min(10, round(8 - 5 * i / n + rng.gauss(0, 1))))),
        )
        for i in range(n)
    ]


def one_evaluation(points: list[Point]) -> None:
    trend = instrument_trend(
        NRS, points, start_date=START, first_session_at=datetime(2026, 4, 1, 9, tzinfo=UTC),
        now=NOW, thresholds=PARAMS.thresholds,
    )  # fmt: skip
    evaluate(PARAMS, STATE, trend, NRS, NOW)


def measure(n_points: int, seconds: float = 3.0, count: int = 200) -> tuple[float, float]:
    """(evaluations per second, CPU ms per evaluation) over ``count`` series of n_points."""
    rng = random.Random(n_points)
    batches = [series(n_points, rng) for _ in range(count)]
    done = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        for points in batches:
            one_evaluation(points)
        done += len(batches)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return done / wall, cpu / done * 1000


def main() -> dict[str, float]:
    per_s_30, cpu_ms_30 = measure(30)
    _, cpu_ms_60 = measure(60)
    print(
        f"analytics_engine: {1000 / cpu_ms_30:,.0f} trend+policy evaluations per CPU second "
        f"({per_s_30:,.0f}/s of wall time; 30 points, one core; target ≥ 20,000)"
    )
    print(f"analytics_engine: {cpu_ms_60:.3f} ms CPU per evaluation (60 points; target < 0.5 ms)")
    _, cpu_ms_300 = measure(300, seconds=1.0, count=20)
    _, cpu_ms_700 = measure(700, seconds=1.0, count=10)
    print(
        f"analytics_engine: {cpu_ms_300:.2f} / {cpu_ms_700:.2f} ms CPU per evaluation at 300 / 700 "
        "points (long windows; no target)"
    )
    return {
        "cpu_ms_per_evaluation_300": round(cpu_ms_300, 3),
        "cpu_ms_per_evaluation_700": round(cpu_ms_700, 3),
        "evaluations_per_cpu_s_30": round(1000 / cpu_ms_30),
        "evaluations_per_s_30": round(per_s_30),
        "cpu_ms_per_evaluation_30": round(cpu_ms_30, 4),
        "cpu_ms_per_evaluation_60": round(cpu_ms_60, 4),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
