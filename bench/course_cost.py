"""The cost of a course with many values (docs/analytics.md, "Bounded cost"): one process,
no server.

- ``trend_policy_ms``: CPU of one evaluation (every instrument's trend and the policy, as a
  recommendation read computes it) for a course whose window holds 30, 1,000 and 10,000 pain
  scores, a device posting about 100 a day over 100 days at the top end. Target: ≤ 5 ms at
  10,000. The values come as the read returns them once their days have settled: a row a day
  (app/analytics/days.py) above 100 values, today's values as they are.
- ``peak_kib``: the peak memory (tracemalloc) one evaluation allocates at each size.
- ``post_ms``: the policy's share of a POST for a patient with that many values (grouping the
  window's values for the course, merging the new one and the verdict). The POST latency
  target itself (≤ 1.5× at 10,000 values against 30) is measured over HTTP by
  ``python -m bench.course_post``; this isolates the part of it in the worker's Python.

    python -m bench.course_cost
"""

from __future__ import annotations

import json
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.analytics.days import reduce_day
from app.analytics.registry import registry
from app.analytics.repository import CourseFacts, PolicyCourse, PolicyInputs, Value
from app.analytics.service import analysis, group_points, policy_of
from app.analytics.trends import MAX_VALUES
from app.recording.service import plan

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)
START = date(2026, 3, 25)
COURSE = PolicyCourse(
    id=uuid.uuid4(), patient_id=uuid.uuid4(), start_date=START, policy="standard-v2",
    status="active", adjustment="auto", sessions_per_week=3, sessions_done=10,
    max_sessions=None, region="lumbar", paused_at=None, resumed_at=None, ended_at=None,
)  # fmt: skip
FACTS = CourseFacts(
    last_change_source="initial",
    last_change_at=NOW - timedelta(days=100),
    first_session_at=datetime(2026, 3, 26, 9, tzinfo=UTC),
    latest_adverse_events=(),
)


def values(n: int, rng: random.Random) -> list[Value]:
    """``n`` pain scores from the window's start over 100 days, drifting 8 → 3, in value
    order; a few before the first session."""
    t0 = datetime(2026, 3, 24, 9, tzinfo=UTC)
    step = timedelta(days=100) / n
    out: list[Value] = [
        (
            "pain-nrs",
            t0 + step * i,
            uuid.uuid4(),
            float(max(0, min(10, round(8 - 5 * i / n + rng.gauss(0, 1))))),
            COURSE.id,
            1,
        )
        for i in range(n)
    ]
    out.sort(key=lambda v: (v[1], v[2]))
    return out


def as_read(window: list[Value]) -> list[Value]:
    """The window as the read returns it: above 100 values, a row a day before today (the
    trend's own reduction of the day, as value_days keeps it), today's values as they are."""
    if len(window) <= MAX_VALUES:
        return window
    days: dict[date, list[Value]] = {}
    for value in window:
        days.setdefault(value[1].date(), []).append(value)
    out: list[Value] = []
    for day, values_of_day in days.items():
        if day >= NOW.date():
            out += values_of_day
            continue
        row = reduce_day([(v[1], v[3]) for v in values_of_day])
        out.append(("pain-nrs", row["recorded_at"], row["id"], row["value"], COURSE.id, row["n"]))
    return out


def _cpu_ms(work: Callable[[], Any], repeat: int) -> float:
    work()  # caches (policy thresholds, window starts)
    start = time.process_time()
    for _ in range(repeat):
        work()
    return (time.process_time() - start) / repeat * 1000


def _peak_kib(work: Callable[[], Any]) -> float:
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1024


def main() -> None:
    rng = random.Random(7)
    params = policy_of(COURSE)
    assert params.id in registry()
    figures: dict[str, dict[int, float]] = {"trend_policy_ms": {}, "peak_kib": {}, "post_ms": {}}
    for n in (30, 1_000, 10_000):
        window = as_read(values(n, rng))
        points = group_points(window, COURSE.id)

        def evaluate(points: Any = points) -> Any:
            return analysis(COURSE, FACTS, points, NOW, params)

        def post(window: list[Value] = window) -> Any:
            inputs = PolicyInputs([(COURSE, FACTS)], list(window))
            new = ("pain-nrs", NOW - timedelta(minutes=1), uuid.uuid4(), 3.0, COURSE.id, 1)
            return plan(inputs, [new], NOW)

        repeat = 200 if n <= 1_000 else 30
        figures["trend_policy_ms"][n] = _cpu_ms(evaluate, repeat)
        figures["peak_kib"][n] = _peak_kib(evaluate)
        figures["post_ms"][n] = _cpu_ms(post, repeat)
        print(
            f"{n:>6,} values: trend + policy {figures['trend_policy_ms'][n]:6.2f} ms CPU, "
            f"peak {figures['peak_kib'][n]:8.1f} KiB; a POST's policy step "
            f"{figures['post_ms'][n]:6.2f} ms CPU",
            flush=True,
        )
    ratio = figures["post_ms"][10_000] / figures["post_ms"][30]
    extra = figures["post_ms"][10_000] - figures["post_ms"][30]
    target = figures["trend_policy_ms"][10_000] <= 5
    print(
        f"trend + policy at 10,000 values: {figures['trend_policy_ms'][10_000]:.2f} ms "
        f"({'PASS' if target else 'FAIL'}, target ≤ 5 ms); a POST's policy step at 10,000 "
        f"values is {ratio:.1f}× that at 30 (+{extra:.2f} ms)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
