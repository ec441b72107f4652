"""Theil–Sen and Mann–Kendall agree with the reference libraries to 1e-9: on fixed series
chosen for the code's branches, and property-based on drawn ones."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pymannkendall
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from app.analytics.stats import (
    MannKendall,
    TheilSen,
    _tie_term,
    mann_kendall,
    theil_sen,
    trend_statistics,
)

TOLERANCE = 1e-9

# Scores as clinics record them: small integer scales (many ties) or one-decimal measures.
integer_scores = st.lists(st.integers(0, 10).map(float), min_size=3, max_size=200)
decimal_scores = st.lists(st.integers(0, 1200).map(lambda v: v / 10), min_size=3, max_size=200)
series = st.one_of(integer_scores, decimal_scores)


@st.composite
def timed_series(
    draw: st.DrawFn, values_of: st.SearchStrategy[list[float]] = series
) -> tuple[np.ndarray, np.ndarray]:
    values = draw(values_of)
    # Times in weeks, non-decreasing, with repeats (two scores in the same minute happen).
    gaps = draw(st.lists(st.integers(0, 5000), min_size=len(values), max_size=len(values)))
    weeks = np.cumsum(np.array(gaps, dtype=float)) / (7 * 24 * 60)
    return weeks, np.array(values, dtype=float)


# Longer than the series whose pair indices are cached (stats._CACHED_UP_TO): another code path.
long_timed_series = timed_series(
    st.one_of(
        st.lists(st.integers(0, 10).map(float), min_size=257, max_size=420),
        st.lists(st.integers(0, 1200).map(lambda v: v / 10), min_size=257, max_size=420),
    )
)


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE


@settings(max_examples=400, deadline=None)
@given(timed_series())
def test_theil_sen_matches_scipy(data: tuple[np.ndarray, np.ndarray]) -> None:
    weeks, values = data
    ours = theil_sen(weeks, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns when all x are equal
        ref = scipy_stats.theilslopes(values, weeks, alpha=0.95)
    if ours is None:
        assert math.isnan(ref.slope)
        return
    assert _close(ours.slope, ref.slope)
    assert _close(ours.low, ref.low_slope)
    assert _close(ours.high, ref.high_slope)


@settings(max_examples=400, deadline=None)
@given(series)
def test_mann_kendall_matches_pymannkendall(values: list[float]) -> None:
    y = np.array(values, dtype=float)
    ours = mann_kendall(y)
    ref = pymannkendall.original_test(y)
    assert _close(ours.s, float(ref.s))
    assert _close(ours.var_s, float(ref.var_s))
    assert _close(ours.z, float(ref.z))
    assert _close(ours.tau, float(ref.Tau))
    assert _close(ours.p, float(ref.p))


def test_monotone_decrease_is_a_significant_downward_trend() -> None:
    y = np.array([8, 7, 7, 6, 5, 4, 4, 3, 2, 2], dtype=float)
    result = mann_kendall(y)
    assert result.tau < -0.8
    assert result.p < 0.001


def test_constant_series_has_no_trend() -> None:
    result = mann_kendall(np.array([5.0, 5.0, 5.0, 5.0]))
    assert result.s == 0
    assert result.p == 1.0


def test_theil_sen_slope_of_a_line() -> None:
    weeks = np.array([0.0, 1.0, 2.0, 3.0])
    fit = theil_sen(weeks, 7 - 1.5 * weeks)
    assert fit is not None
    assert fit.slope == pytest.approx(-1.5)


def test_theil_sen_without_spread_in_time_is_none() -> None:
    assert theil_sen(np.zeros(3), np.array([1.0, 2.0, 3.0])) is None


@settings(max_examples=300, deadline=None)
@given(timed_series())
def test_combined_trend_statistics_match_the_references(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    """The write path's shared-intermediates version agrees with scipy and pymannkendall too."""
    weeks, values = data
    _assert_like_the_references(weeks, values, *trend_statistics(weeks, values))


def _assert_like_the_references(
    weeks: np.ndarray, values: np.ndarray, sen: TheilSen | None, *mks: MannKendall
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns when all x are equal
        ref = scipy_stats.theilslopes(values, weeks, alpha=0.95)
    if sen is None:  # every time the same
        assert math.isnan(ref.slope)
    else:
        assert _close(sen.slope, ref.slope)
        assert _close(sen.low, ref.low_slope)
        assert _close(sen.high, ref.high_slope)
    ref_mk = pymannkendall.original_test(values)
    for mk in mks:
        assert _close(mk.s, float(ref_mk.s))
        assert _close(mk.var_s, float(ref_mk.var_s))
        assert _close(mk.z, float(ref_mk.z))
        assert _close(mk.tau, float(ref_mk.Tau))
        assert _close(mk.p, float(ref_mk.p))


@settings(max_examples=300, deadline=None)
@given(timed_series())
def test_trend_statistics_of_lists_match_those_of_arrays(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    """The trend path passes plain lists (the cheaper input): same numbers, bit for bit."""
    weeks, values = data
    assert trend_statistics(weeks.tolist(), values.tolist()) == trend_statistics(weeks, values)
    # Whole scores arrive as ints as often as floats.
    as_ints = [int(v) if v.is_integer() else v for v in values.tolist()]
    assert trend_statistics(weeks.tolist(), as_ints) == trend_statistics(weeks, values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 1.0, 2.5, 3.0, math.inf, math.nan]), max_size=40))
def test_tie_term_matches_counting_the_groups(values: list[float]) -> None:
    expected = sum(t * (t - 1) * (2 * t + 5) for t in Counter(values).values() if t > 1)
    assert _tie_term(values) == expected


def test_x_and_y_of_different_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        trend_statistics([0.0, 1.0, 2.0], [1.0, 2.0])


@settings(max_examples=25, deadline=None)
@given(long_timed_series)
def test_long_series_match_the_references_too(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Past the cached pair indices the pairs come from a table of differences."""
    weeks, values = data
    sen, mk = trend_statistics(weeks.tolist(), values.tolist())
    _assert_like_the_references(weeks, values, sen, mk, mann_kendall(values))


# Fixed series, each for a branch: (weeks, values). Weeks are distinct unless said.
FIXED: dict[str, tuple[list[float], list[float]]] = {
    # Pain falling over a course, with ties in the scores: S < 0, so z = (S + 1) / σ.
    "falling": ([0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8], [8, 7, 7, 6, 6, 5, 4, 4, 3, 2]),
    # A mobility measure rising in decimals: S > 0, so z = (S − 1) / σ.
    "rising": ([0, 1, 2, 3, 4, 5, 6], [40.0, 42.5, 41.0, 45.5, 47.0, 46.5, 50.0]),
    # No trend at all: S = 0, so z = 0 and p = 1.
    "flat": ([0, 1, 2, 3], [1, 2, 2, 1]),
    # Two scores in the same week (ties in time): pairs with dx = 0 drop out of the slopes.
    "ties in time": ([0, 0, 1, 1, 2, 3, 3, 4], [5, 6, 5, 4, 4, 3, 5, 2]),
    # Ties so heavy that Sen's variance is negative: the slope without an interval.
    "negative variance": ([0, 0, 0, 1], [1, 1, 1, 1]),
    # An odd number of slopes (the median is one slope, not the mean of two).
    "three": ([0, 1, 3], [6, 4, 5]),
    # Longer than the cached pair indices (stats._CACHED_UP_TO = 256): the other code path.
    "long": (
        [i / 3 for i in range(300)],
        [round(7 - i / 60 + ((i * 37) % 11) / 4, 1) for i in range(300)],
    ),
}


def _references(weeks: np.ndarray, values: np.ndarray) -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's sqrt of a negative variance
        sen = scipy_stats.theilslopes(values, weeks, alpha=0.95)
    return sen, pymannkendall.original_test(values)


def _assert_theil_sen(ours: TheilSen | None, ref: Any) -> None:
    assert ours is not None
    assert abs(ours.slope - ref.slope) <= TOLERANCE, (ours, ref)
    assert _close(ours.low, ref.low_slope), (ours, ref)
    assert _close(ours.high, ref.high_slope), (ours, ref)


def _assert_mann_kendall(ours: MannKendall, ref: Any) -> None:
    assert abs(ours.s - float(ref.s)) <= TOLERANCE, (ours, ref)
    assert abs(ours.var_s - float(ref.var_s)) <= TOLERANCE, (ours, ref)
    assert abs(ours.z - float(ref.z)) <= TOLERANCE, (ours, ref)
    assert abs(ours.tau - float(ref.Tau)) <= TOLERANCE, (ours, ref)
    assert abs(ours.p - float(ref.p)) <= TOLERANCE, (ours, ref)


@pytest.mark.parametrize("name", FIXED)
def test_fixed_series_match_the_references(name: str) -> None:
    """Slope, interval, S, var(S), z, tau and p: each entry point, arrays and lists."""
    weeks_list, values_list = (list(map(float, v)) for v in FIXED[name])
    weeks, values = np.array(weeks_list), np.array(values_list)
    ref_sen, ref_mk = _references(weeks, values)
    _assert_theil_sen(theil_sen(weeks, values), ref_sen)
    _assert_mann_kendall(mann_kendall(values), ref_mk)
    for x, y in ((weeks, values), (weeks_list, values_list)):
        sen, mk = trend_statistics(x, y)
        _assert_theil_sen(sen, ref_sen)
        _assert_mann_kendall(mk, ref_mk)


def test_the_fixed_series_reach_their_branches() -> None:
    """The series above keep meaning what their comments say."""
    s = {name: mann_kendall(np.array(v, dtype=float)).s for name, (_, v) in FIXED.items()}
    assert s["falling"] < 0 < s["rising"]
    assert s["flat"] == 0
    assert mann_kendall(np.array(FIXED["flat"][1], dtype=float)).p == 1.0
    fit = theil_sen(*(np.array(v, dtype=float) for v in FIXED["negative variance"]))
    assert fit is not None
    assert math.isnan(fit.low)
    assert math.isnan(fit.high)
    assert len(FIXED["long"][1]) > 256
