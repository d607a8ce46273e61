"""The perturbation study's measures of each layer for the layer atlas (lesion.atlas).

From a swept model's metrics table (the clean test set's top-1, draw by draw):
  OPERATOR.area       the area under the top-1 curve normalised by the clean top-1, over the
                      levels from 0 (the clean network, 1) to the highest, divided by that
                      level: 1 = unharmed at every level, 0 = ruined at once
  OPERATOR.tolerance  the largest level up to which top-1 stays within `within` (a share,
                      0.05 = 5 points) of clean at every level; 0 when the lowest already fails
  OPERATOR.loss       bit operators (bitflip, stuck_at_*): top-1 lost at `bit_level`, the
                      configured rate (the lowest of the operator's levels when absent)
Each per draw: draw d of every level is one curve (levels are drawn independently, so
pairing them by draw index is one of many equally valid pairings). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lesion import files
from lesion.atlas import COLUMNS, curves
from lesion.catalog import BIT_OPERATORS
from lesion.kinds import METRICS


def area(levels: np.ndarray, top1: np.ndarray, clean: float) -> np.ndarray:
    """Normalised area under each row's top-1 curve (rows: draws), from level 0 (top-1 =
    clean) to the highest level, divided by it."""
    x = np.r_[0.0, levels]
    y = np.column_stack([np.full(len(top1), clean), top1]) / clean
    return np.trapezoid(y, x, axis=1) / x[-1]


def tolerance(levels: np.ndarray, top1: np.ndarray, clean: float, within: float) -> np.ndarray:
    """Largest level up to which each row's top-1 stays within `within` of clean."""
    kept = np.cumprod(top1 >= clean - within, axis=1).astype(bool)  # every level up to it
    last = kept.sum(axis=1)
    return np.where(last > 0, levels[np.maximum(last - 1, 0)], 0.0)


def measures(model: str, tables: Mapping[str, str], settings: Mapping) -> pd.DataFrame:
    """Area, tolerance (or bit loss) of every (operator, layer) of `model`'s metrics table."""
    metrics = files.read_table(tables["metrics"], METRICS).to_pandas()
    clean, table = curves(metrics)
    rows = []
    for (operator, layer), curve in table.groupby(level=["perturbation", "layer"], sort=False):
        curve = curve.dropna(axis=1, how="all")
        levels = curve.columns.to_numpy(dtype=float)
        top1, draws = curve.to_numpy(dtype=float), curve.index.get_level_values("draw")
        if operator in BIT_OPERATORS:
            level = settings.get("bit_level")
            level = float(levels[0]) if level is None else float(level)
            if level not in levels:
                raise ValueError(f"atlas: bit_level = {level!r} is not a level of {operator} in "
                                 f"{tables['metrics']}; expected one of {levels.tolist()}")
            lost = clean - top1[:, list(levels).index(level)]
            found = {"loss": (lost, "high", level)}
        else:
            found = {"area": (area(levels, top1, clean), "low", np.nan),
                     "tolerance": (tolerance(levels, top1, clean, settings["within"]), "low", np.nan)}
        for quantity, (values, fragile, level) in found.items():
            rows += [{"layer": layer, "measure": f"{operator}.{quantity}", "level": level,
                      "draw": int(d), "value": float(v), "fragile": fragile,
                      "study": "perturbation", "source": str(tables["metrics"])}
                     for d, v in zip(draws, values, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)
