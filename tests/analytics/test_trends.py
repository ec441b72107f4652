"""Per-instrument trend definitions (docs/analytics.md), on plain numbers."""

from __future__ import annotations

import itertools
import random
import statistics
import warnings
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pymannkendall
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from app.analytics.trends import (
    Point,
    Thresholds,
    daily_medians,
    in_window,
    instrument_trend,
    primary_instrument,
    split_baseline,
)
from app.observations.catalogue import BY_CODE

START = date(2026, 3, 2)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # first session
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def pts(*pairs: tuple[float, float]) -> list[Point]:
    """(days after the first session, value) pairs."""
    return [Point(T0 + timedelta(days=d), v) for d, v in pairs]


def trend(code: str, points: list[Point], first_session_at: datetime | None = T0, **kw: object):  # type: ignore[no-untyped-def]
    return instrument_trend(
        BY_CODE[code],
        points,
        start_date=START,
        first_session_at=first_session_at,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


def test_baseline_is_the_mean_before_the_first_session_and_current_the_median_of_last_three() -> (
    None
):
    result = trend("pain-nrs", pts((-3, 8), (-1, 6), (1, 6), (3, 5), (5, 3), (7, 4), (9, 2)))
    assert result.n == 7
    assert result.baseline == 7  # mean(8, 6)
    assert result.current == 3  # median(3, 4, 2)
    assert result.improvement_abs == 4
    assert result.improvement_pct == pytest.approx(4 / 7 * 100)
    assert result.mcid_reached
    assert result.status == "responder"
    assert result.last_value == 2
    assert result.last_recorded_at == T0 + timedelta(days=9)
    assert result.slope_per_week is not None
    assert result.slope_per_week < 0
    assert result.slope_ci is not None
    assert result.slope_ci[0] <= result.slope_per_week <= result.slope_ci[1]
    assert result.mann_kendall is not None
    assert result.mann_kendall.tau < 0


def test_a_value_at_the_first_sessions_moment_is_pre_treatment() -> None:
    """Its pain_before is recorded then: what was measured before the injection."""
    result = trend("pain-nrs", pts((0, 8), (2, 7), (4, 6)))
    assert result.baseline == 8
    assert result.current == 6.5  # median of the 2 values after the baseline


def test_without_a_value_before_the_first_session_there_is_no_baseline() -> None:
    """v1 took the first value, often a score minutes after an injection (its immediate
    effect): a later relapse then read as worsening."""
    result = trend("pain-nrs", pts((1 / 24, 4), (2, 6), (4, 6), (6, 6)))
    assert (result.status, result.baseline, result.current) == ("insufficient-data", None, None)
    assert result.reason is not None
    assert "before the next session" in result.reason
    assert result.slope_per_week is not None  # the statistics are still there


def test_improvement_is_capped_at_full_recovery() -> None:
    # Flexion 30° → 70° where 60° is normal: 40° of a 30° deficit is 100%, not 133%.
    result = trend("rom-lumbar-flexion", pts((-1, 30), (2, 70), (4, 70), (6, 70)))
    assert (result.improvement_abs, result.improvement_pct) == (40, 100)
    assert result.status == "responder"


FLEXION = BY_CODE["rom-lumbar-flexion"]  # normal (best) 60°


@pytest.mark.parametrize(
    ("baseline", "after", "status"),
    [
        (60, 80, "normal"),  # at best already: no deficit
        (80, 65, "normal"),  # past best, still normal: not worsening
        (60, 60 - FLEXION.mcid_abs, "worsening"),  # an MCID short of normal
        (60, 61 - FLEXION.mcid_abs, "normal"),  # less: within measurement error
        (40, 60, "responder"),  # a deficit recovered
    ],
)
def test_normal_mobility_is_normal_unless_it_falls_an_mcid_short_of_normal(
    baseline: float, after: float, status: str
) -> None:
    result = trend("rom-lumbar-flexion", pts((-1, baseline), (2, after), (4, after), (6, after)))
    assert result.status == status


@pytest.mark.parametrize(
    ("code", "after", "status"),
    [
        ("pain-nrs", 2, "worsening"),  # no pain at baseline, 2 points now: the MCID (2)
        ("pain-nrs", 1, "normal"),  # less: within measurement error
        ("finger-floor", 10, "worsening"),  # fingertips on the floor, then 10 cm: the MCID (10)
        ("finger-floor", 9, "normal"),
    ],
)
def test_no_deficit_where_lower_is_better_is_normal_unless_an_mcid_worse(
    code: str, after: float, status: str
) -> None:
    """The same rule as for mobility, the other way round: worse is above the healthy end."""
    result = trend(code, pts((-1, 0), (2, after), (4, after), (6, after)))
    assert (result.baseline, result.current, result.status) == (0, after, status)


def test_values_outside_the_window_are_ignored() -> None:
    too_early = Point(datetime(2026, 2, 10, tzinfo=UTC), 10)  # > 14 days before the start
    future = Point(NOW + timedelta(days=1), 0)
    result = trend("pain-nrs", [too_early, future, *pts((-1, 6), (2, 5), (4, 4))])
    assert result.n == 3
    assert result.baseline == 6


@pytest.mark.parametrize(
    "points",
    [
        [],
        pts((-1, 7)),
        pts((-1, 7), (2, 5)),  # fewer than 3 values
        pts((-3, 7), (-2, 6), (-1, 7)),  # nothing after the baseline
    ],
)
def test_insufficient_data_gives_nulls_not_errors(points: list[Point]) -> None:
    result = trend("pain-nrs", points)
    assert result.status == "insufficient-data"
    assert result.baseline is None
    assert result.current is None
    assert result.improvement_abs is None
    assert result.improvement_pct is None
    assert not result.mcid_reached


@pytest.mark.parametrize(
    ("points", "first_session_at", "reason"),
    [
        (pts((-1, 7), (2, 5)), T0, "fewer than 3 values in the course window"),
        (
            pts((-3, 7), (-2, 6), (-1, 7)),
            None,
            "no session yet: every value so far is the baseline",
        ),
        (
            pts((1, 7), (2, 6), (3, 5)),
            T0,
            "no value before the first session: record a score before the next session's "
            "injection (or the session's pain_before) to have a baseline",
        ),
        (pts((-3, 7), (-2, 6), (-1, 7)), T0, "no value after the first session yet"),
    ],
)
def test_insufficient_data_says_why_and_still_shows_the_newest_value(
    points: list[Point], first_session_at: datetime | None, reason: str
) -> None:
    result = trend("pain-nrs", points, first_session_at=first_session_at)
    assert (result.status, result.reason) == ("insufficient-data", reason)
    assert (result.n, result.n_used) == (len(points), len(points))
    assert (result.last_value, result.last_recorded_at) == (
        points[-1].value,
        points[-1].recorded_at,
    )
    # The slope needs 3 values; with 3 or more it is there even with no response to measure.
    assert (result.slope_per_week is None) == (len(points) < 3)


def test_no_session_yet_means_no_response_to_measure() -> None:
    result = trend("pain-nrs", pts((-3, 7), (-2, 6), (-1, 7)), first_session_at=None)
    assert result.status == "insufficient-data"
    assert result.slope_per_week is not None  # the series still has a trend


# Boundaries on pain-nrs (MCID 2 points): baseline 10 so each point is 10%.
@pytest.mark.parametrize(
    ("current", "status"),
    [
        (5, "responder"),  # exactly 50%, 5 points
        (6, "partial-responder"),  # 40%
        (7, "partial-responder"),  # exactly 30%, exactly MCID + 1
        (8, "non-responder"),  # 20%, exactly MCID but under 30%
        (9, "non-responder"),
        (12, "worsening"),  # -2: exactly -MCID
    ],
)
def test_status_boundaries_on_a_lower_is_better_scale(current: float, status: str) -> None:
    # pain-nrs tops at 10, so use the VAS-like arithmetic via pain-vas for 12; NRS for the rest
    code = "pain-nrs" if current <= 10 else "pain-vas"
    baseline = 10
    result = trend(code, pts((-1, baseline), (1, current), (2, current), (3, current)))
    if code == "pain-vas":  # VAS MCID is 15 mm: scale the worsening case
        result = trend(code, pts((-1, 10), (1, 25), (2, 25), (3, 25)))
    assert result.status == status


def test_exactly_thirty_percent_and_exactly_mcid_is_partial() -> None:
    # ODI (MCID 10 points): 40 → 28 is 12 points, 30%
    result = trend("odi", pts((-1, 40), (3, 28), (6, 28), (9, 28)))
    assert result.improvement_pct == 30
    assert result.status == "partial-responder"


def test_just_under_mcid_is_not_a_response_even_above_thirty_percent() -> None:
    # NRS 3 → 2 is 33% but only 1 point (MCID 2)
    result = trend("pain-nrs", pts((-1, 3), (1, 2), (2, 2), (3, 2)))
    assert result.improvement_pct == pytest.approx(100 / 3)
    assert result.status == "non-responder"


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ((20, 40, 42, 45), "responder"),  # lumbar flexion 20° → 42°: 22 of 40 to normal (55%)
        ((20, 34, 33, 33), "partial-responder"),  # +13°, 32.5%
        ((20, 24, 25, 25), "non-responder"),  # +5° < MCID 13
        ((40, 27, 26, 27), "worsening"),  # -13°: the MCID
    ],
)
def test_status_where_higher_is_better_lumbar_flexion(
    values: tuple[float, ...], status: str
) -> None:
    result = trend(
        "rom-lumbar-flexion", pts(*((-1 if i == 0 else i, v) for i, v in enumerate(values)))
    )
    assert result.status == status


def test_schober_improvement_is_measured_towards_the_normal_excursion() -> None:
    # Schober best is 5 cm: 2 → 4 cm is +2 (MCID 2) and 2/3 of the way to normal
    result = trend("schober", pts((-1, 2), (2, 4), (4, 4), (6, 4)))
    assert result.improvement_abs == 2
    assert result.improvement_pct == pytest.approx(200 / 3)
    assert result.status == "responder"


def test_a_baseline_already_at_best_is_normal_with_no_improvement_pct() -> None:
    result = trend("pain-nrs", pts((-1, 0), (1, 0), (2, 1), (3, 0)))
    assert result.improvement_pct is None
    assert result.status == "normal"


def test_custom_thresholds() -> None:
    result = trend(
        "pain-nrs", pts((-1, 10), (1, 6), (2, 6), (3, 6)), thresholds=Thresholds(responder_pct=40)
    )
    assert result.status == "responder"


def test_primary_instrument_prefers_nrs_then_vas_then_first() -> None:
    assert primary_instrument(["odi", "pain-vas", "pain-nrs"]) == "pain-nrs"
    assert primary_instrument(["odi", "pain-vas"]) == "pain-vas"
    assert primary_instrument(["schober", "odi"]) == "schober"
    assert primary_instrument([]) is None


# --- points in time order take a faster path: it must give the same trend -----------------------

WINDOW_START = datetime(2026, 2, 16, tzinfo=UTC)  # START minus the default 14 days


@st.composite
def course_points(draw: st.DrawFn) -> list[Point]:
    """Points in time order around the course window, with repeated times."""
    gaps = draw(st.lists(st.integers(0, 3 * 24 * 60), min_size=0, max_size=40))
    values = draw(st.lists(st.integers(0, 10), min_size=len(gaps), max_size=len(gaps)))
    first = WINDOW_START - timedelta(days=draw(st.integers(0, 5)))
    times = [first + timedelta(minutes=m) for m in itertools.accumulate(gaps)]
    return [Point(t, float(v)) for t, v in zip(times, values, strict=True)]


def _reference_window(points: list[Point]) -> list[Point]:
    """The window as it is defined: filter, then a stable sort by time."""
    return sorted(
        (p for p in points if WINDOW_START <= p.recorded_at <= NOW), key=lambda p: p.recorded_at
    )


@settings(max_examples=300, deadline=None)
@given(course_points(), st.randoms(use_true_random=False))
def test_points_in_time_order_give_the_same_trend_as_in_any_order(
    points: list[Point], rng: random.Random
) -> None:
    in_order = trend("pain-nrs", points)
    # A point before the window, last: out of order, and the window sorts back the same way
    # (equal times keep their order).
    out_of_order = [*points, Point(WINDOW_START - timedelta(days=9), 10)]
    assert trend("pain-nrs", out_of_order) == in_order
    assert trend("pain-nrs", tuple(points)) == in_order  # type: ignore[arg-type]
    assert in_window(points, START, NOW, Thresholds()) == _reference_window(points)
    assert in_window(out_of_order, START, NOW, Thresholds()) == _reference_window(points)
    distinct = list({p.recorded_at: p for p in points}.values())
    shuffled = rng.sample(distinct, len(distinct))
    assert trend("pain-nrs", shuffled) == trend("pain-nrs", distinct)


def test_the_window_includes_both_ends() -> None:
    at_start = Point(WINDOW_START, 8)
    at_now = Point(NOW, 3)
    points = [Point(WINDOW_START - timedelta(microseconds=1), 10), at_start, *pts((1, 6), (2, 5))]
    points += [at_now, Point(NOW + timedelta(microseconds=1), 0)]
    assert in_window(points, START, NOW, Thresholds()) == [at_start, *pts((1, 6), (2, 5)), at_now]
    result = trend("pain-nrs", points)
    assert (result.n, result.baseline, result.last_value) == (4, 8, 3)


def test_the_window_includes_both_ends_whatever_the_order_of_the_points() -> None:
    """Points out of time order are filtered rather than sliced: the same two ends count."""
    at_start = Point(WINDOW_START, 8)
    at_now = Point(NOW, 3)
    points = [at_now, Point(NOW + timedelta(microseconds=1), 0), *pts((2, 5), (1, 6))]
    points += [at_start, Point(WINDOW_START - timedelta(microseconds=1), 10)]
    assert in_window(points, START, NOW, Thresholds()) == [at_start, *pts((1, 6), (2, 5)), at_now]
    result = trend("pain-nrs", points)
    assert (result.n, result.baseline, result.last_value) == (4, 8, 3)


@settings(max_examples=200, deadline=None)
@given(course_points(), st.integers(-3 * 24 * 60, 40 * 24 * 60))
def test_split_baseline_follows_its_rule(points: list[Point], minutes: int) -> None:
    first_session_at = WINDOW_START + timedelta(minutes=minutes)
    # Pre-treatment: up to the first session's moment (its pain_before is recorded then).
    before = [p for p in points if p.recorded_at <= first_session_at]
    after = [p for p in points if p.recorded_at > first_session_at]
    assert split_baseline(points, first_session_at) == (before, after)
    assert split_baseline(points, None) == (points, [])


# --- above MAX_VALUES values, one a day ----------------------------------------------------------


def _daily_reference(points: list[Point]) -> list[Point]:
    """One point per UTC date, written out plainly: the day's median value at the median of
    its times, standing for the day's values."""
    days: dict[date, list[Point]] = {}
    for p in points:
        days.setdefault(p.recorded_at.date(), []).append(p)
    reduced = []
    for day_points in days.values():
        stamps = sorted(p.recorded_at.timestamp() for p in day_points)
        middle = statistics.median(stamps)
        reduced.append(
            Point(
                datetime.fromtimestamp(middle, UTC),
                statistics.median(p.value for p in day_points),
                len(day_points),
            )
        )
    return reduced


@st.composite
def many_points(draw: st.DrawFn) -> list[Point]:
    """101–400 values over up to 30 days of the window, several a day."""
    count = draw(st.integers(101, 400))
    minutes = sorted(draw(st.lists(st.integers(0, 30 * 24 * 60), min_size=count, max_size=count)))
    values = draw(st.lists(st.integers(0, 10), min_size=count, max_size=count))
    return [
        Point(WINDOW_START + timedelta(minutes=m), float(v))
        for m, v in zip(minutes, values, strict=True)
    ]


@settings(max_examples=60, deadline=None)
@given(many_points())
def test_above_a_hundred_values_the_trend_reads_daily_medians_exactly(points: list[Point]) -> None:
    in_window_points = [p for p in points if p.recorded_at <= NOW]
    reduced = _daily_reference(in_window_points)
    assert daily_medians(in_window_points) == reduced
    result = trend("pain-nrs", points)
    assert (result.n, result.n_used) == (len(in_window_points), len(reduced))
    if len(reduced) < 3:
        return
    t0 = reduced[0].recorded_at.timestamp()
    weeks = np.array([(p.recorded_at.timestamp() - t0) / (7 * 86400) for p in reduced])
    values = np.array([p.value for p in reduced])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns when all x are equal
        ref = scipy_stats.theilslopes(values, weeks, alpha=0.95)
    assert result.slope_per_week == pytest.approx(ref.slope, abs=1e-9)
    mk = pymannkendall.original_test(values)
    assert result.mann_kendall is not None
    assert result.mann_kendall.tau == pytest.approx(mk.Tau, abs=1e-9)
    assert result.mann_kendall.p == pytest.approx(mk.p, abs=1e-9)


def test_a_hundred_values_are_used_as_they_are() -> None:
    points = [Point(WINDOW_START + timedelta(hours=h), float(h % 7)) for h in range(100)]
    result = trend("pain-nrs", points)
    assert (result.n, result.n_used) == (100, 100)
