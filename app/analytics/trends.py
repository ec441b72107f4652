"""Response trend of one instrument in a course (docs/analytics.md, "The trend of one instrument").

Pure: no database, no HTTP, no clock (``now`` is passed in). Series of any length give a
result; fewer than 3 values give ``insufficient-data`` with nulls, never an exception.

The baseline is what was measured before treatment: the values recorded up to the first
session (its ``pain_before`` among them). A score taken after the first injection is the
injection's immediate effect, not a baseline, so a course without a pre-treatment value has
no baseline (``insufficient-data``). Above ``MAX_VALUES`` values in the window, the trend reads
one value per UTC day (that day's median, at the median of its times): the cost of a trend is
bounded whatever a device posts, and a day's many readings weigh as one day.
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
    "insufficient-data", "normal", "responder", "partial-responder", "non-responder", "worsening"
]

SECONDS_PER_WEEK = 7 * 24 * 3600.0
# Improvements are compared at this precision so 30% computed as 29.999999999999996 is 30%.
_DECIMALS = 9
# Above this many values of an instrument in a course window, one value per day (see above).
MAX_VALUES = 100
SECONDS_PER_DAY = 86400


@dataclass(frozen=True, slots=True)
class Point:
    recorded_at: datetime
    value: float
    # How many values the point stands for: 1, or a day's count when the day was reduced
    # ahead of the read (app/analytics/days.py; such a point is alone in its day).
    weight: int = 1


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
    n: int  # values in the window
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
    n_used: int | None = None  # the values the statistics used (one a day above MAX_VALUES)
    reason: str | None = None  # why the status is insufficient-data

    @property
    def used(self) -> int:
        return self.n if self.n_used is None else self.n_used


def window_start(start_date: date, thresholds: Thresholds) -> datetime:
    """Values count from this many days before the course's start date (UTC midnight)."""
    return window_opens(start_date, thresholds.window_days_before_start)


# A course's trends are recomputed on every write with the same start date: the datetime
# arithmetic is a fair share of a whole evaluation's time at tens of values.
@lru_cache(maxsize=1024)
def window_opens(start_date: date, days_before: int) -> datetime:
    """UTC midnight ``days_before`` days before ``start_date``: where a course's window opens."""
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
    """The trend of ``points`` (in (recorded_at, id) order, or any order) of ``instrument`` in
    a course from ``start_date``."""
    window, _ = _window(points, window_start(start_date, thresholds), now)
    n = sum(p.weight for p in window)
    series = daily_medians(window) if n > MAX_VALUES else window
    used = len(series)
    if used < 3:
        return _no_response(instrument, n, series, _TOO_FEW)

    times = [p.recorded_at for p in series]
    values = [p.value for p in series]
    # The same floats as numpy's (seconds - seconds[0]) / SECONDS_PER_WEEK, without an array.
    t0 = times[0].timestamp()
    weeks = [(t - t0) / SECONDS_PER_WEEK for t in map(datetime.timestamp, times)]
    sen, mk = trend_statistics(weeks, values)
    slope = sen.slope if sen else None
    slope_ci = (sen.low, sen.high) if sen else None
    split = _baseline_end(times, first_session_at) if first_session_at else used
    reason = (
        _NO_SESSION if first_session_at is None
        else _NO_BASELINE if split == 0
        else _NOTHING_AFTER if split == used
        else None
    )  # fmt: skip
    if reason is not None:
        return _no_response(instrument, n, series, reason, slope, slope_ci, mk)

    baseline = math.fsum(values[:split]) / split  # statistics.fmean's arithmetic
    current = statistics.median(values[split:][-thresholds.current_of_last :])
    improvement_abs, improvement_pct = improvement(instrument, baseline, current)
    return InstrumentTrend(
        instrument=instrument.code,
        n=n,
        n_used=used,
        baseline=baseline,
        current=current,
        last_value=values[-1],
        last_recorded_at=times[-1],
        improvement_abs=improvement_abs,
        improvement_pct=improvement_pct,
        mcid_reached=improvement_abs >= instrument.mcid_abs,
        status=classify(
            instrument, improvement_abs, improvement_pct, thresholds, baseline, current
        ),
        slope_per_week=slope,
        slope_ci=slope_ci,
        mann_kendall=mk,
    )


_TOO_FEW = "fewer than 3 values in the course window"
_NO_SESSION = "no session yet: every value so far is the baseline"
_NO_BASELINE = (
    "no value before the first session: record a score before the next session's injection "
    "(or the session's pain_before) to have a baseline"
)
_NOTHING_AFTER = "no value after the first session yet"


def daily_medians(series: Sequence[Point]) -> list[Point]:
    """One point per UTC day of a time-ordered series: the median of the day's values, at the
    median of their times. A point alone in its day is that day's point as it is (a day
    reduced ahead of the read is one: its median is itself)."""
    reduced: list[Point] = []
    day_points: list[Point] = []
    day = None
    for point in series:
        this_day = point.recorded_at.timestamp() // SECONDS_PER_DAY
        if this_day != day and day_points:
            reduced.append(median_point(day_points))
            day_points = []
        day = this_day
        day_points.append(point)
    if day_points:
        reduced.append(median_point(day_points))
    return reduced


def median_point(day: Sequence[Point]) -> Point:
    """The point of one day's time-ordered values: their median at the median of their times,
    standing for all of them."""
    if len(day) == 1:
        return day[0]
    # The times are in order already; the median of an odd count is one of them.
    middle = statistics.median([p.recorded_at.timestamp() for p in day])
    value = statistics.median([p.value for p in day])
    return Point(datetime.fromtimestamp(middle, UTC), value, sum(p.weight for p in day))


def _no_response(
    instrument: Instrument,
    n: int,
    series: Sequence[Point],
    reason: str,
    slope_per_week: float | None = None,
    slope_ci: tuple[float, float] | None = None,
    mann_kendall: MannKendall | None = None,
) -> InstrumentTrend:
    """The trend of a series with no response to measure: too short, no session yet, no
    pre-treatment value, or nothing after the first session."""
    last = series[-1] if series else None
    return InstrumentTrend(
        instrument=instrument.code, n=n, n_used=len(series), baseline=None, current=None,
        last_value=last.value if last else None,
        last_recorded_at=last.recorded_at if last else None,
        improvement_abs=None, improvement_pct=None, slope_per_week=slope_per_week,
        slope_ci=slope_ci, mann_kendall=mann_kendall, mcid_reached=False,
        status="insufficient-data", reason=reason,
    )  # fmt: skip


def _baseline_end(times: Sequence[datetime], first_session_at: datetime) -> int:
    """How many of a time-ordered series' values are its baseline: those recorded up to the
    first session (its pain_before is recorded at its time)."""
    return bisect_right(times, first_session_at)


def split_baseline(
    series: Sequence[Point], first_session_at: datetime | None
) -> tuple[Sequence[Point], Sequence[Point]]:
    """(baseline values, values after them) of a time-ordered series: the pre-treatment
    values (up to the first session) and the rest. Without a session yet every value is
    pre-treatment: nothing follows."""
    if first_session_at is None:
        return series, []
    split = _baseline_end([p.recorded_at for p in series], first_session_at)
    return series[:split], series[split:]


def improvement(
    instrument: Instrument, baseline: float, value: float
) -> tuple[float, float | None]:
    """(improvement_abs, improvement_pct) of ``value`` against ``baseline``; pct None when
    the baseline is at best, and at most 100 (a value past the healthy end is full recovery)."""
    raw = baseline - value if instrument.better == "lower" else value - baseline
    span = abs(baseline - instrument.best)
    pct = min(round(100.0 * raw / span, _DECIMALS), 100.0) if span > 0 else None
    return round(raw, _DECIMALS), pct


def at_or_past_best(instrument: Instrument, value: float) -> bool:
    """Whether ``value`` is at the healthy end or beyond it (flexion 65° when 60° is normal)."""
    if instrument.better == "lower":
        return value <= instrument.best
    return value >= instrument.best


def classify(
    instrument: Instrument,
    improvement_abs: float,
    improvement_pct: float | None,
    thresholds: Thresholds,
    baseline: float,
    current: float,
) -> Status:
    """The first status that holds (docs/analytics.md, "Status": rows 2–6)."""
    mcid = instrument.mcid_abs
    if at_or_past_best(instrument, baseline):
        # No deficit to recover: worse only once the current value is on the wrong side of
        # the healthy end by at least the MCID.
        shortfall = (
            current - instrument.best if instrument.better == "lower" else instrument.best - current
        )
        return "worsening" if shortfall >= mcid else "normal"
    if improvement_abs <= -mcid and not at_or_past_best(instrument, current):
        return "worsening"
    pct = improvement_pct if improvement_pct is not None else float("-inf")
    if pct >= thresholds.responder_pct and improvement_abs >= mcid:
        return "responder"
    if pct >= thresholds.partial_pct and improvement_abs >= mcid:
        return "partial-responder"
    return "non-responder"


PRIMARY_ORDER = ("pain-nrs", "pain-vas")


def primary_order(codes_with_values: Sequence[str]) -> list[str]:
    """The instruments with values in the order the primary one is chosen: `pain-nrs`, then
    `pain-vas`, then the others (in the order given)."""
    first = [code for code in PRIMARY_ORDER if code in codes_with_values]
    return first + [code for code in codes_with_values if code not in PRIMARY_ORDER]


def primary_instrument(codes_with_values: Sequence[str], normal: Sequence[str] = ()) -> str | None:
    """`pain-nrs` if it has values, else `pain-vas`, else the first instrument with values;
    skipping those whose status is ``normal`` (no deficit), unless all are."""
    ordered = primary_order(codes_with_values)
    for code in ordered:
        if code not in normal:
            return code
    return ordered[0] if ordered else None
