"""Which layer is most fragile: one row per (model, operator, layer) from the metrics
summary, the one-line answer the performances figure gives by eye. Torch-free.

Columns: dataset, model, testset, perturbation, layer (one set of rows per test set:
`clean` and the adversarial sets of perturbations.testsets); clean_top1, the unperturbed network's
top-1; auc, the area under the mean top-1 curve from level 0 (the clean network) to the
highest level, divided by that level: the mean top-1 over the range, comparable across
operators whose levels have different units (1 = never hurt, 0 = ruined at once);
half_level, the level at which mean top-1 first falls below half of clean_top1
(linear between the two grid levels around it; empty when it never does); rank,
1 for the most fragile layer (lowest auc) of each (model, operator).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from lesion import files
from lesion.kinds import SUMMARY

KEYS = ["dataset", "model", "testset", "perturbation", "layer"]


def _half_level(levels: np.ndarray, values: np.ndarray, half: float) -> float:
    below = np.flatnonzero(values < half)
    if below.size == 0:
        return float("nan")
    i = below[0]  # > 0: values[0] is the clean top-1, above its half
    (l0, l1), (v0, v1) = levels[i - 1:i + 1], values[i - 1:i + 1]
    return float(l0 + (v0 - half) * (l1 - l0) / (v0 - v1))


def fragility(summary: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """The fragility of every swept layer of the summary's model(s)."""
    rows = summary[summary["metric"] == metric]
    if "testset" not in rows:
        rows = rows.assign(testset="clean")
    clean = rows[rows["perturbation"] == "none"].set_index(["model", "testset"])["mean"]
    out = []
    for key, line in rows[rows["perturbation"] != "none"].groupby(KEYS, sort=False):
        line = line.sort_values("level")
        start = float(clean[(key[1], key[2])])
        levels = np.r_[0.0, line["level"].to_numpy()]
        values = np.r_[start, line["mean"].to_numpy()]
        auc = float(np.trapezoid(values, levels) / levels[-1]) if levels[-1] > 0 else start
        out.append({**dict(zip(KEYS, key, strict=True)), "clean_top1": start, "auc": auc,
                    "half_level": _half_level(levels, values, start / 2)
                    if start > 0 else float("nan")})
    table = pd.DataFrame(out, columns=[*KEYS, "clean_top1", "auc", "half_level"])
    table["rank"] = table.groupby(["model", "testset", "perturbation"])["auc"].rank(
        method="min").astype(int)
    return table


def write_fragility(summary: str | os.PathLike, csv: str | os.PathLike) -> None:
    """The fragility table of a metrics summary, as CSV for the report."""
    table = fragility(files.read_table(summary, SUMMARY).to_pandas())
    with files.atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
