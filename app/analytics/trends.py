"""Response trend of one instrument within one course (ANALYTICS.md, "Trend of one instrument").

Pure: no database, no HTTP, no clock (``now`` is passed in). Series of any length give a
result; fewer than 3 values give ``insufficient-data`` with nulls, never an exception.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import Literal

import numpy as np

from app.analytics.stats import MannKendall, trend_statistics
from app.observations.catalogue import Instrument

Status = Literal[
    "insufficient-data", "responder", "partial-responder", "non-responder", "worsening"
]

SECONDS_PER_WEEK = 7 * 24 * 3600.0
# Improvements are compared at this precision so 30% computed as 29.999999999999996 is 30%.
_DECIMALS = 9


@dataclass(frozen=True, slots=True)
class Point:
    recorded_at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Status cut-offs (IMMPACT, Dworkin 2008: ≥30% moderate, ≥50% substantial improvement)."""

    responder_pct: float = 50.0
    partial_pct: float = 30.0
    window_days_before_start: int = 14
    current_of_last: int = 3


@dataclass(frozen=True, slots=True)
class InstrumentTrend:
    instrument: str
    n: int
    baseline: float | None
    current: float | None
    last_value: float | None
    last_recorded_at: datetime | None
    improvement_abs: float | None
    improvement_pct: float | None
    slope_per_week: float | None
    slope_ci: tuple[float, float] | None
    mann_kendall: MannKendall | None
    mcid_reached: bool
    status: Status


def window_start(start_date: date, thresholds: Thresholds) -> datetime:
    """Values count from this many days before the course's start date (UTC midnight)."""
    first_day = start_date - timedelta(days=thresholds.window_days_before_start)
    return datetime.combine(first_day, time.min, tzinfo=UTC)


_recorded_at = attrgetter("recorded_at")


def in_window(
    points: Sequence[Point], start_date: date, now: datetime, thresholds: Thresholds
) -> list[Point]:
    """The values a course's trend uses, oldest first: from the window start until ``now``."""
    since = window_start(start_date, thresholds)
    return sorted((p for p in points if since <= p.recorded_at <= now), key=_recorded_at)


def instrument_trend(
    instrument: Instrument,
    points: Sequence[Point],
    *,
    start_date: date,
    first_session_at: datetime | None,
    now: datetime,
    thresholds: Thresholds = Thresholds(),
) -> InstrumentTrend:
    """The trend of ``points`` (any order) of ``instrument`` in a course from ``start_date``."""
    series = in_window(points, start_date, now, thresholds)
    n = len(series)
    last_value = series[-1].value if series else None
    last_recorded_at = series[-1].recorded_at if series else None
    empty = InstrumentTrend(
        instrument=instrument.code, n=n, baseline=None, current=None,
        last_value=last_value, last_recorded_at=last_recorded_at,
        improvement_abs=None, improvement_pct=None, slope_per_week=None, slope_ci=None,
        mann_kendall=None, mcid_reached=False, status="insufficient-data",
    )  # fmt: skip
    if n < 3:
        return empty

    before, after = split_baseline(series, first_session_at)
    values = np.fromiter((p.value for p in series), dtype=np.float64, count=n)
    seconds = np.fromiter((p.recorded_at.timestamp() for p in series), dtype=np.float64, count=n)
    weeks = (seconds - seconds[0]) / SECONDS_PER_WEEK
    sen, mk = trend_statistics(weeks, values)
    if not after:
        return replace(
            empty,
            slope_per_week=sen.slope if sen else None,
            slope_ci=(sen.low, sen.high) if sen else None,
            mann_kendall=mk,
        )

    baseline = statistics.fmean(p.value for p in before)
    current = statistics.median(p.value for p in after[-thresholds.current_of_last :])
    improvement_abs, improvement_pct = improvement(instrument, baseline, current)
    mcid_reached = improvement_abs >= instrument.mcid_abs
    return InstrumentTrend(
        instrument=instrument.code,
        n=n,
        baseline=baseline,
        current=current,
        last_value=last_value,
        last_recorded_at=last_recorded_at,
        improvement_abs=improvement_abs,
        improvement_pct=improvement_pct,
        mcid_reached=mcid_reached,
        status=classify(instrument, improvement_abs, improvement_pct, thresholds),
        slope_per_week=sen.slope if sen else None,
        slope_ci=(sen.low, sen.high) if sen else None,
        mann_kendall=mk,
    )


def split_baseline(
    series: Sequence[Point], first_session_at: datetime | None
) -> tuple[Sequence[Point], Sequence[Point]]:
    """(baseline values, values after them) of a time-ordered series.

    The baseline is what was recorded before the first session; without any, the course's
    first value. Without a session yet every value is pre-treatment: nothing follows.
    """
    if first_session_at is None:
        return series, []
    before = [p for p in series if p.recorded_at < first_session_at]
    if not before:
        return series[:1], series[1:]
    return before, [p for p in series if p.recorded_at >= first_session_at]


def improvement(
    instrument: Instrument, baseline: float, value: float
) -> tuple[float, float | None]:
    """(improvement_abs, improvement_pct) of ``value`` against ``baseline``; pct None at best."""
    raw = baseline - value if instrument.better == "lower" else value - baseline
    span = abs(baseline - instrument.best)
    pct = round(100.0 * raw / span, _DECIMALS) if span > 0 else None
    return round(raw, _DECIMALS), pct


def classify(
    instrument: Instrument,
    improvement_abs: float,
    improvement_pct: float | None,
    thresholds: Thresholds,
) -> Status:
    """The first status that holds (ANALYTICS.md, status rules 2–5)."""
    mcid = instrument.mcid_abs
    if improvement_abs <= -mcid:
        return "worsening"
    pct = improvement_pct if improvement_pct is not None else float("-inf")
    if pct >= thresholds.responder_pct and improvement_abs >= mcid:
        return "responder"
    if pct >= thresholds.partial_pct and improvement_abs >= mcid:
        return "partial-responder"
    return "non-responder"


PRIMARY_ORDER = ("pain-nrs", "pain-vas")


def primary_instrument(codes_with_values: Sequence[str]) -> str | None:
    """`pain-nrs` if it has values, else `pain-vas`, else the first instrument with values."""
    for code in PRIMARY_ORDER:
        if code in codes_with_values:
            return code
    return codes_with_values[0] if codes_with_values else None
