"""Response trend of one instrument in a course (docs/analytics.md, "The trend of one instrument").

Pure: no database, no HTTP, no clock (``now`` is passed in). Series of any length give a
result; fewer than 3 values give ``insufficient-data`` with nulls, never an exception.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Literal

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
    return _window_start(start_date, thresholds.window_days_before_start)


# A course's trends are recomputed on every write with the same start date: the datetime
# arithmetic is a fair share of a whole evaluation's time at tens of values.
@lru_cache(maxsize=1024)
def _window_start(start_date: date, days_before: int) -> datetime:
    return datetime.combine(start_date - timedelta(days=days_before), time.min, tzinfo=UTC)


_recorded_at = attrgetter("recorded_at")


def in_window(
    points: Sequence[Point], start_date: date, now: datetime, thresholds: Thresholds
) -> list[Point]:
    """The values a course's trend uses, oldest first: from the window start until ``now``."""
    return _window(points, window_start(start_date, thresholds), now)[0]


def _window(
    points: Sequence[Point], since: datetime, now: datetime
) -> tuple[list[Point], list[datetime]]:
    """The points recorded from ``since`` until ``now``, oldest first, and their times."""
    times = [p.recorded_at for p in points]
    # Points usually come in time order (the query's ORDER BY): then the window is a slice.
    # Timsort confirms an ordered list in one pass of comparisons, quicker than a Python loop.
    if times == sorted(times):
        lo, hi = bisect_left(times, since), bisect_right(times, now)
        return list(points[lo:hi]), times[lo:hi]
    series = sorted((p for p in points if since <= p.recorded_at <= now), key=_recorded_at)
    return series, [p.recorded_at for p in series]


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
    series, times = _window(points, window_start(start_date, thresholds), now)
    n = len(series)
    if n < 3:
        return _no_response(instrument, series)

    values = [p.value for p in series]
    # The same floats as numpy's (seconds - seconds[0]) / SECONDS_PER_WEEK, without an array.
    t0 = times[0].timestamp()
    weeks = [(t - t0) / SECONDS_PER_WEEK for t in map(datetime.timestamp, times)]
    sen, mk = trend_statistics(weeks, values)
    slope_per_week = sen.slope if sen else None
    slope_ci = (sen.low, sen.high) if sen else None
    split = _baseline_end(times, first_session_at)
    if split == n:  # no session yet: nothing to compare with the baseline
        return _no_response(instrument, series, slope_per_week, slope_ci, mk)

    baseline = math.fsum(values[:split]) / split  # statistics.fmean's arithmetic
    current = statistics.median(values[split:][-thresholds.current_of_last :])
    improvement_abs, improvement_pct = improvement(instrument, baseline, current)
    return InstrumentTrend(
        instrument=instrument.code,
        n=n,
        baseline=baseline,
        current=current,
        last_value=values[-1],
        last_recorded_at=times[-1],
        improvement_abs=improvement_abs,
        improvement_pct=improvement_pct,
        mcid_reached=improvement_abs >= instrument.mcid_abs,
        status=classify(instrument, improvement_abs, improvement_pct, thresholds),
        slope_per_week=slope_per_week,
        slope_ci=slope_ci,
        mann_kendall=mk,
    )


def _no_response(
    instrument: Instrument,
    series: Sequence[Point],
    slope_per_week: float | None = None,
    slope_ci: tuple[float, float] | None = None,
    mann_kendall: MannKendall | None = None,
) -> InstrumentTrend:
    """The trend of a series with no response to measure: too short, or no session yet."""
    last = series[-1] if series else None
    return InstrumentTrend(
        instrument=instrument.code, n=len(series), baseline=None, current=None,
        last_value=last.value if last else None,
        last_recorded_at=last.recorded_at if last else None,
        improvement_abs=None, improvement_pct=None, slope_per_week=slope_per_week,
        slope_ci=slope_ci, mann_kendall=mann_kendall, mcid_reached=False,
        status="insufficient-data",
    )  # fmt: skip


def _baseline_end(times: Sequence[datetime], first_session_at: datetime | None) -> int:
    """How many of a time-ordered series' values are its baseline (``split_baseline``'s rule).

    All of them without a session yet; else those before the first session, or the first value
    if none is.
    """
    if first_session_at is None:
        return len(times)
    return bisect_left(times, first_session_at) or 1


def split_baseline(
    series: Sequence[Point], first_session_at: datetime | None
) -> tuple[Sequence[Point], Sequence[Point]]:
    """(baseline values, values after them) of a time-ordered series.

    The baseline is what was recorded before the first session; without any, the course's
    first value. Without a session yet every value is pre-treatment: nothing follows.
    """
    if first_session_at is None:
        return series, []
    split = _baseline_end([p.recorded_at for p in series], first_session_at)
    return series[:split], series[split:]


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
    """The first status that holds (docs/analytics.md, "Status": rows 2–5)."""
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
