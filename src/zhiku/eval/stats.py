"""Bootstrap confidence intervals: percentile intervals over questions resampled with replacement.

Every interval here resamples *questions* (with a fixed seed, so a rerun gives the same interval); a ratio
of two settings resamples the same questions for both (paired), which is what makes a difference between
settings on the same questions visible at all.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def _indices(n: int, seed: int, resamples: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def mean_ci(values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES) -> tuple[float, float, float]:
    """(mean, low, high) with a 95% percentile bootstrap interval; (nan, nan, nan) for no values."""
    if not values:
        return float("nan"), float("nan"), float("nan")
    arr = np.asarray(values, dtype=float)
    means = arr[_indices(len(arr), seed, resamples)].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(arr.mean()), float(lo), float(hi)


def ratio_ci(num: Sequence[float], den: Sequence[float], seed: int = 0,
             resamples: int = RESAMPLES) -> tuple[float, float, float]:
    """mean(num) / mean(den) over paired per-question values, with a paired bootstrap interval."""
    if not num or len(num) != len(den) or not sum(den):
        return float("nan"), float("nan"), float("nan")
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    idx = _indices(len(a), seed, resamples)
    sa, sb = a[idx].mean(axis=1), b[idx].mean(axis=1)
    ratios = sa[sb > 0] / sb[sb > 0]
    lo, hi = np.quantile(ratios, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(a.mean() / b.mean()), float(lo), float(hi)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (linear interpolation, as numpy's default); nan for no values."""
    return float(np.quantile(np.asarray(values, dtype=float), q)) if values else float("nan")
