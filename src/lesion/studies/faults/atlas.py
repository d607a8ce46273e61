"""The fault study's measures of each layer for the layer atlas (lesion.atlas).

At one crash probability p (`crash_level`; the middle of faults.levels when absent), from
the bounds table:
  crash.error  the Monte Carlo standard deviation of the output error Delta when each neuron
               of the layer crashes with probability p (statistic std: the spread the crash
               adds to the logits, sqrt(mean Var Delta); lesion.studies.faults.bounds)
  crash.b3     b3's prediction of the same quantity from the clean network's gradients
One value each (one Monte Carlo estimate over faults.repetitions): no interval. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lesion import files
from lesion.atlas import COLUMNS
from lesion.studies.faults.kinds import BOUNDS


def crash_level(levels, wanted) -> float:
    """The configured p, or the middle of the levels (the lower of two middles)."""
    levels = sorted(set(float(p) for p in levels))
    return levels[(len(levels) - 1) // 2] if wanted is None else float(wanted)


def measures(model: str, tables: Mapping[str, str], settings: Mapping) -> pd.DataFrame:
    bounds = files.read_table(tables["bounds"], BOUNDS).to_pandas()
    p = crash_level(bounds["p"], settings.get("crash_level"))
    if not np.isclose(bounds["p"], p).any():
        raise ValueError(f"atlas: crash_level = {p!r} is not a level of {tables['bounds']}; "
                         f"expected one of {sorted(set(bounds['p']))} (faults.levels)")
    b3 = bounds[np.isclose(bounds["p"], p) & (bounds["bound"] == "b3") & (bounds["statistic"] == "std")]
    rows = []
    for row in b3.itertuples():
        for name, value in (("error", row.mc), ("b3", row.value)):
            rows.append({"layer": row.layer, "measure": f"crash.{name}", "level": p, "draw": 0,
                         "value": float(value), "fragile": "high", "study": "faults",
                         "source": str(tables["bounds"])})
    return pd.DataFrame(rows, columns=COLUMNS)
