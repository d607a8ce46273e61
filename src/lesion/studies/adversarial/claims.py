"""Szegedy et al. (2013)'s headline claims, judged from the adversarial study's tables.

- Distortion grows with weight decay (Table 1: FC10(1e-4) 0.062, FC10(1)
  0.14): the mean L-BFGS distortion of the same architecture at its largest
  weight decay minus at its smallest, Welch's interval over the attacked
  images (successes with distortion > 0, from the sets themselves).
- Examples transfer across models far above Gaussian noise of the same RMS:
  the mean error of other models on a model's examples amplified to sigma
  against the mean error on Gaussian noise of RMS sigma.
- Transfer to a network trained on the disjoint half is below transfer to a
  network trained on the same half.
- Adversarial training lowers test error (1.2% against 1.6% with weight
  decay alone): over the replicate seeds, the regime without attack at the
  adversarial regime's weight decay minus the adversarial regime.
Errors of one set are shares of its images: Newcombe's interval of a
difference of proportions, with the set's image count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load_file

from lesion import files
from lesion.claims import Claim, proportion_difference, welch
from lesion.studies.adversarial import kinds

STUDY = "adversarial (Szegedy et al. 2013)"


def claims(tables: Mapping[str, str | os.PathLike]) -> list[Claim]:
    """Tables distortion, transfer, cross_training, adversarial_training and `lbfgs:<model>`
    (the L-BFGS sets); a claim whose tables are missing is left out."""
    out = []
    distortion = (files.read_table(tables["distortion"], kinds.DISTORTION).to_pandas()
                  if "distortion" in tables else None)
    if distortion is not None:
        claim = _weight_decay(distortion, {k.partition(":")[2]: v for k, v in tables.items()
                                           if k.startswith("lbfgs:")})
        out += [claim] if claim else []
    images = int(distortion["n_images"].max()) if distortion is not None else 0
    if "transfer" in tables and images:
        claim = _transfer(files.read_table(tables["transfer"], kinds.TRANSFER).to_pandas(), images)
        out += [claim] if claim else []
    if "cross_training" in tables and images:
        out += _cross(files.read_table(tables["cross_training"],
                                       kinds.CROSS_TRAINING).to_pandas(), images)
    if "adversarial_training" in tables:
        claim = _training(files.read_table(tables["adversarial_training"],
                                           kinds.ADVERSARIAL_TRAINING).to_pandas())
        out += [claim] if claim else []
    return out


def _distortions(path) -> list[float]:
    tensors = load_file(str(path))
    d, ok = tensors["distortion"], tensors["success"].astype(bool)
    return [float(x) for x in d[ok & (d > 0)]]


def _weight_decay(table, sets):
    lbfgs = table[table["attack"] == "lbfgs"]
    best = None
    for _, group in lbfgs.groupby("arch"):
        if group["weight_decay"].nunique() >= 2 and (best is None or len(group) > len(best)):
            best = group
    if best is None:
        return None
    low, high = best.loc[best["weight_decay"].idxmin()], best.loc[best["weight_decay"].idxmax()]
    if low["model"] not in sets or high["model"] not in sets:
        return None
    diff, lo, hi = welch(_distortions(sets[high["model"]]), _distortions(sets[low["model"]]))
    return Claim(STUDY, "the minimal distortion grows with weight decay",
                 "Table 1: FC10(1) 0.14 against FC10(1e-4) 0.062", 0.14 - 0.062,
                 "mean L-BFGS distortion at the largest weight decay minus at the smallest",
                 f"{high['model']} against {low['model']}", diff, lo, hi, (0.0, math.inf),
                 "Welch t over the attacked images")


def _transfer(table, images):
    gauss = table[table["attack"] == "gaussian"]
    if gauss.empty:
        return None
    sigma = float(gauss["sigma"].min())
    noise = float(gauss.loc[gauss["sigma"] == sigma, "error"].mean())
    adv = table[(table["attack"] == "lbfgs") & table["amplified"] & (table["sigma"] == sigma)
                & (table["source"] != table["target"])]
    if adv.empty:
        return None
    mean = float(adv["error"].mean())
    diff, lo, hi = proportion_difference(mean, images, noise, images)
    return Claim(STUDY, "examples transfer across models far above Gaussian noise of the same RMS",
                 "Table 3: a relatively large fraction of other models' errors", math.nan,
                 "mean error of other models on amplified L-BFGS examples minus on Gaussian noise",
                 f"every source and other target, RMS {sigma:g}", diff, lo, hi,
                 (0.0, math.inf), f"Newcombe over {images} images")


def _cross(table, images):
    plain = table[(table["source"] != "gaussian") & ~table["amplified"]]
    same, disjoint = [], []
    for _, row in plain.iterrows():
        if row["target"] == row["source"]:
            continue
        (same if row["target_split"] == row["source_split"] else disjoint).append(row["error"])
    if not same or not disjoint:
        return []
    diff, lo, hi = proportion_difference(float(np.mean(same)), images,
                                         float(np.mean(disjoint)), images)
    return [Claim(STUDY, "transfer to a network trained on the disjoint half is lower than to "
                  "one trained on the same half",
                  "Table 5: adversarial examples stay hard for a disjoint training set, less so",
                  math.nan, "mean error on the same half minus on the disjoint half",
                  "the cross-training networks, unamplified", diff, lo, hi, (0.0, math.inf),
                  f"Newcombe over {images} images")]


def _training(table):
    adversarial = table[table["adversarial"] != "none"]
    if adversarial.empty:
        return None
    decay = float(adversarial["weight_decay"].iloc[0])
    plain = table[(table["adversarial"] == "none") & (table["dropout"] == 0)
                  & np.isclose(table["weight_decay"], decay)]
    label = f"weight decay {decay:g} alone"
    if plain.empty:
        plain, label = table[table["regime"] == "base"], "the base network"
    diff, lo, hi = welch(list(plain["test_error"]), list(adversarial["test_error"]))
    model = table["model"].iloc[0]
    return Claim(STUDY, "adversarial training lowers test error",
                 "1.2% against 1.6% with weight decay alone", 0.016 - 0.012,
                 f"test error of {label} minus with adversarial training",
                 f"{model}, {len(adversarial)} seeds", diff, lo, hi, (0.0, math.inf),
                 "Welch t over the replicate seeds")
