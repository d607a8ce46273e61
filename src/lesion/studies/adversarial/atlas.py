"""The adversarial study's measure of each layer for the layer atlas (lesion.atlas).

OPERATOR.coupling: does damaging this layer hurt robustness more than accuracy? From a
swept model's metrics table on its adversarial test sets (perturbations.testsets, the
adversarial study's FGSM set): the top-1 the sweep loses on the adversarial set minus the
top-1 it loses on the clean test set, averaged over the levels, per draw (top-1 as a
share: 0.1 = 10 points). Above 0: the damage costs more robustness than accuracy.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lesion import files
from lesion.atlas import COLUMNS, curves
from lesion.kinds import METRICS


def measures(model: str, tables: Mapping[str, str], settings: Mapping) -> pd.DataFrame:
    """The coupling of every (operator, layer) on each adversarial test set of `model`."""
    metrics = files.read_table(tables["metrics"], METRICS).to_pandas()
    clean_top1, clean = curves(metrics)
    rows = []
    for testset in sorted(set(metrics["testset"]) - {"clean"}):
        adversarial_top1, adversarial = curves(metrics, testset)
        lost = (adversarial_top1 - adversarial) - (clean_top1 - clean.loc[adversarial.index])
        coupling = lost.mean(axis=1)  # over the levels
        name = "coupling" if testset == "fgsm" else f"coupling_{testset}"
        rows += [{"layer": layer, "measure": f"{operator}.{name}", "level": np.nan,
                  "draw": int(draw), "value": float(v), "fragile": "high", "study": "adversarial",
                  "source": str(tables["metrics"])}
                 for (operator, layer, draw), v in coupling.items()]
    if not rows:
        raise ValueError(f"atlas: {tables['metrics']} holds no adversarial test set; expected "
                         "perturbations.testsets such as [fgsm]")
    return pd.DataFrame(rows, columns=COLUMNS)
