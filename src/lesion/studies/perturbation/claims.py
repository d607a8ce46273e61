"""Cheney et al. (2017)'s headline claims, judged from the perturbation sweep's summaries.

The paper (AlexNet, ImageNet top-5): knocking out over 70% of the synapses of
the higher convolutional or dense layers costs under 30% of performance;
the same in conv1 drops it to near chance. Here, per network with at least
three weight layers: the first layer in forward order against the higher
hidden layers (every layer after the first but the output layer), at the
smallest knockout level >= 0.7 of the sweep, top-1 relative to the clean
network's, with intervals over the draws (the summary's mean, std and n).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from lesion import files, kinds
from lesion.claims import Claim, welch_from

STUDY = "perturbation (Cheney et al. 2017)"
LEVEL = 0.7          # "over 70% of the weights"
KEPT = 0.7           # "costs under 30% of performance"


def claims(tables: Mapping[str, str | os.PathLike]) -> list[Claim]:
    """Tables `summary:<model>` (metrics_summary.parquet of each swept network)."""
    return [claim for name, path in tables.items()
            for claim in _knockout(name.partition(":")[2],
                                   files.read_table(path, kinds.SUMMARY).to_pandas())]


def _knockout(model: str, summary) -> list[Claim]:
    top1 = summary[(summary["metric"] == "top1") & (summary["testset"] == "clean")]
    clean = float(top1.loc[top1["perturbation"] == "none", "mean"].iloc[0])
    knock = top1[top1["perturbation"] == "synapse_knockout"]
    layers = list(dict.fromkeys(knock["layer"]))  # the sweep's order: forward
    levels = sorted(x for x in set(knock["level"]) if x >= LEVEL - 1e-9)
    if len(layers) < 3 or not levels or clean <= 0:
        return []
    at = knock[knock["level"] == levels[0]].set_index("layer")

    def moments(layer):
        row = at.loc[layer]
        return float(row["mean"]) / clean, float(row["std"]) / clean, int(row["n"])

    first, higher = layers[0], layers[1:-1]
    worst = min(higher, key=lambda layer: moments(layer)[0])
    diff, low, high = welch_from(moments(worst), moments(first))
    mean, _, n = moments(worst)
    half = float(at.loc[worst, "ci95"]) / clean if n > 1 else math.nan
    return [
        Claim(STUDY, "the first layer is the most fragile to synapse knockout",
              "Fig. 2: 70% knockout in conv1 drops top-5 to near chance, in the higher layers "
              "it costs under 30%", math.nan,
              "relative top-1 of the most fragile higher hidden layer minus the first layer's",
              f"{model}: {first} against {worst} at {levels[0]:g} synapse knockout", diff, low,
              high, (0.0, math.inf), "Welch t over the draws"),
        Claim(STUDY, "higher layers keep over 70% of performance at 70% synapse knockout",
              "Fig. 2: under 30% of performance lost", KEPT,
              "relative top-1 of the most fragile higher hidden layer",
              f"{model}: {worst} at {levels[0]:g}", mean, mean - half, mean + half,
              (KEPT, math.inf), "t over the draws"),
    ]
