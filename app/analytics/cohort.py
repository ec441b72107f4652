"""Cohort aggregation for dashboards (docs/analytics.md, "Cohort summary"): pure functions."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from app.analytics.trends import (
    InstrumentTrend,
    Point,
    Status,
    Thresholds,
    improvement,
    in_window,
    split_baseline,
)
from app.observations.catalogue import Instrument

STATUSES: tuple[Status, ...] = (
    "normal",
    "responder",
    "partial-responder",
    "non-responder",
    "worsening",
    "insufficient-data",
)


@dataclass(frozen=True, slots=True)
class CourseOutcome:
    status: Status
    # week of course (1 = the first 7 days from start_date) → improvement_pct that week
    weekly_improvement_pct: dict[int, float]


@dataclass(frozen=True, slots=True)
class WeekImprovement:
    week: int
    mean_improvement_pct: float
    n: int


@dataclass(frozen=True, slots=True)
class CohortSummary:
    courses: int
    by_status: dict[str, int]
    responder_rate: float | None
    improvement_by_week: list[WeekImprovement]


def weekly_improvement(
    instrument: Instrument,
    points: Sequence[Point],
    *,
    start_date: date,
    first_session_at: datetime | None,
    now: datetime,
    thresholds: Thresholds,
) -> dict[int, float]:
    """improvement_pct of each week's median against the course baseline, by week of course."""
    series = in_window(points, start_date, now, thresholds)
    before, after = split_baseline(series, first_session_at)
    if not before or not after:
        return {}
    baseline = statistics.fmean(p.value for p in before)
    by_week: dict[int, list[float]] = defaultdict(list)
    for p in after:
        week = (p.recorded_at.date() - start_date).days // 7 + 1
        if week >= 1:
            by_week[week].append(p.value)
    weekly: dict[int, float] = {}
    for week, values in sorted(by_week.items()):
        _, pct = improvement(instrument, baseline, statistics.median(values))
        if pct is not None:
            weekly[week] = pct
    return weekly


def outcome(trend: InstrumentTrend | None, weekly: dict[int, float] | None = None) -> CourseOutcome:
    return CourseOutcome(
        status=trend.status if trend else "insufficient-data", weekly_improvement_pct=weekly or {}
    )


def summarise(outcomes: Iterable[CourseOutcome]) -> CohortSummary:
    """Counts by status; responder rate = (responder + partial) / courses with enough data."""
    counts: Counter[str] = Counter()
    weeks: dict[int, list[float]] = defaultdict(list)
    total = 0
    for course in outcomes:
        total += 1
        counts[course.status] += 1
        for week, pct in course.weekly_improvement_pct.items():
            weeks[week].append(pct)
    with_data = total - counts["insufficient-data"]
    responders = counts["responder"] + counts["partial-responder"]
    return CohortSummary(
        courses=total,
        by_status={status: counts[status] for status in STATUSES},
        responder_rate=responders / with_data if with_data else None,
        improvement_by_week=[
            WeekImprovement(week=w, mean_improvement_pct=statistics.fmean(v), n=len(v))
            for w, v in sorted(weeks.items())
        ],
    )
