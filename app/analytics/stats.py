"""Robust trend statistics on small series, vectorised with numpy.

They reproduce the reference implementations exactly (property-tested to 1e-9):
- ``theil_sen``: ``scipy.stats.theilslopes(y, x, alpha=0.95)`` (slope and Sen's 1968 interval);
- ``mann_kendall``: ``pymannkendall.original_test`` (S with tie-corrected variance, continuity
  corrected normal approximation, two-sided p; tau = S / (n(n-1)/2)).
scipy's own call costs ~100 µs of overhead per series; the policy runs on the write path.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# norm.ppf(0.025): the two-sided 95% quantile used for Sen's interval.
_Z_975 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class TheilSen:
    slope: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class MannKendall:
    s: float
    var_s: float
    z: float
    tau: float
    p: float


_CACHED_UP_TO = 256  # pair-index arrays for longer series are not kept: n=1000 is 8 MB


@lru_cache(maxsize=_CACHED_UP_TO)
def _cached_triangle(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    rows, cols = np.triu_indices(n, 1)
    return rows, cols


def _upper_triangle(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    if n <= _CACHED_UP_TO:
        return _cached_triangle(n)
    rows, cols = np.triu_indices(n, 1)
    return rows, cols


def _tie_term(values: FloatArray) -> int:
    """Σ t(t−1)(2t+5) over groups of t equal values (groups of one contribute 0)."""
    # A Counter beats np.unique by ~4x on series of tens of values.
    return sum(t * (t - 1) * (2 * t + 5) for t in Counter(values.tolist()).values() if t > 1)


def _median_of_sorted(values: FloatArray) -> float:
    # np.median's overhead is ~13 µs; on a sorted array it is the middle (pair's mean).
    mid = len(values) // 2
    if len(values) % 2:
        return float(values[mid])
    return float((values[mid - 1] + values[mid]) / 2.0)


def _sorted_tie_term(values: FloatArray) -> int:
    """The tie term of an already sorted array: ties are runs of equal neighbours."""
    if len(values) < 2 or not np.any(values[1:] == values[:-1]):
        return 0  # the common case for timestamps: no work beyond one comparison
    return _tie_term(values)


def _theil_sen(x: FloatArray, dy: FloatArray, y_ties: int, x_sorted: bool) -> TheilSen | None:
    n = len(x)
    i, j = _upper_triangle(n)
    dx = x[j] - x[i]
    # scipy keeps pairs with x[a] - x[b] > 0 over all ordered pairs: the same set as dx != 0.
    keep = dx != 0
    slopes = np.sort(dy[keep] / dx[keep])
    nt = len(slopes)
    if nt == 0:
        return None
    slope = _median_of_sorted(slopes)
    x_ties = _sorted_tie_term(x) if x_sorted else _tie_term(x)
    sigsq = (n * (n - 1) * (2 * n + 5) - x_ties - y_ties) / 18.0
    if sigsq < 0:
        return TheilSen(slope, math.nan, math.nan)
    sigma = math.sqrt(sigsq)
    upper = min(round((nt + _Z_975 * sigma) / 2.0), nt - 1)
    lower = max(round((nt - _Z_975 * sigma) / 2.0) - 1, 0)
    return TheilSen(slope, float(slopes[lower]), float(slopes[upper]))


def _mann_kendall(n: int, dy: FloatArray, y_ties: int) -> MannKendall:
    s = float(np.sum(np.sign(dy)))
    var_s = (n * (n - 1) * (2 * n + 5) - y_ties) / 18.0
    if s > 0:
        z = (s - 1) / math.sqrt(var_s)
    elif s < 0:
        z = (s + 1) / math.sqrt(var_s)
    else:
        z = 0.0
    # 2·(1 − Φ(|z|)) = erfc(|z|/√2), without the cancellation of 1 − Φ for large |z|.
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return MannKendall(s=s, var_s=var_s, z=z, tau=s / (0.5 * n * (n - 1)), p=p)


def _pairwise(y: FloatArray) -> FloatArray:
    i, j = _upper_triangle(len(y))
    return y[j] - y[i]


def theil_sen(x: FloatArray, y: FloatArray) -> TheilSen | None:
    """Median pairwise slope with its 95% interval; None when every x is the same."""
    return _theil_sen(x, _pairwise(y), _tie_term(y), x_sorted=False)


def mann_kendall(y: FloatArray) -> MannKendall:
    """Mann–Kendall trend test of a series in time order."""
    return _mann_kendall(len(y), _pairwise(y), _tie_term(y))


def trend_statistics(weeks: FloatArray, values: FloatArray) -> tuple[TheilSen | None, MannKendall]:
    """Both statistics of a time-ordered series, sharing the pairwise differences and ties."""
    dy = _pairwise(values)
    ties = _tie_term(values)
    return _theil_sen(weeks, dy, ties, x_sorted=True), _mann_kendall(len(values), dy, ties)
