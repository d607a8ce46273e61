"""Confidence intervals over replicates (torch-free): one rule for every study's table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import scipy.stats


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t interval of `values` (NaN bounds for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values; expected at least one replicate")
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(scipy.stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
