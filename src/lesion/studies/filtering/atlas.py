"""The filtering study's measures of each layer for the layer atlas (lesion.atlas).

FILTER.clean, FILTER.adversarial, FILTER.difference: the layer's score under each synaptic
filter (Pravin et al. 2024: the change of accuracy per share of weights removed, on the
clean test set, on the checkpoint's FGSM set, and their difference) at the last filtered
checkpoint, with its class (fragile below -tol, antifragile above tol, robust between) in
the column `class`. One value each (the filters are deterministic): no interval. The
scores of every layer at once (layer `all`) are not a layer's and are left out. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lesion import files
from lesion.atlas import COLUMNS
from lesion.catalog import ALL_LAYERS
from lesion.studies.filtering.kinds import SCORES

TESTSETS = ("clean", "adversarial", "difference")


def measures(model: str, tables: Mapping[str, str], settings: Mapping) -> pd.DataFrame:
    scores = files.read_table(tables["scores"], SCORES).to_pandas()
    last = scores[(scores["epoch"] == scores["epoch"].max()) & (scores["layer"] != ALL_LAYERS)]
    rows = [{"layer": row["layer"], "measure": f"{row['filter']}.{testset}", "level": np.nan,
             "draw": 0, "value": float(row[f"score_{testset}"]), "fragile": "low",
             "study": "filtering", "source": str(tables["scores"]),
             "class": row[f"class_{testset}"], "epoch": int(row["epoch"])}
            for _, row in last.iterrows() for testset in TESTSETS]
    return pd.DataFrame(rows, columns=[*COLUMNS, "class", "epoch"])
