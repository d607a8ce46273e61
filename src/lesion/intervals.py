"""Confidence intervals over replicates (torch-free): one rule for every study's table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import scipy.stats


def moments(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of `values`."""
    n = len(values)
    if n == 0:
        raise ValueError("no values; expected at least one replicate")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, sd, n


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t interval of `values` (NaN bounds for one value)."""
    mean, sd, n = moments(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(scipy.stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
