"""Pravin et al. (2024)'s headline claims, judged from the filtering study's tables.

Per network, with the filter and score that select the layers to retrain
(the retraining table's metadata): the classes differ across layers (at the
last epoch, the layers fall in more than one class); some layers keep their
class at every epoch; retraining only the robust and antifragile layers
raises FGSM accuracy (against an FGSM set regenerated for each network)
above the checkpoint's and above retraining every parameter, with Student-t
intervals over the replicate seeds (paired by seed against `all`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from lesion import files
from lesion.claims import Claim
from lesion.intervals import t_interval
from lesion.studies.filtering import kinds

STUDY = "filtering (Pravin et al. 2024)"


def claims(tables: Mapping[str, str | os.PathLike]) -> list[Claim]:
    """Tables `scores:<model>` and `retraining:<model>`."""
    out = []
    models = [k.partition(":")[2] for k in tables if k.startswith("scores:")]
    for model in models:
        retraining = files.read_table(tables[f"retraining:{model}"], kinds.RETRAINING)
        meta = {k.decode(): v.decode() for k, v in (retraining.schema.metadata or {}).items()}
        filter, score = meta["filter"], meta["score"]
        scores = files.read_table(tables[f"scores:{model}"], kinds.SCORES).to_pandas()
        out += _classes(model, scores, filter, score)
        out += _retraining(model, retraining.to_pandas(), filter, score)
    return out


def _classes(model, scores, filter, score):
    here = scores[(scores["filter"] == filter) & (scores["layer"] != "all")]
    last = here[here["epoch"] == here["epoch"].max()]
    found = last[f"class_{score}"].dropna()
    kept = here.groupby("layer")[f"class_{score}"].nunique(dropna=False).eq(1)
    return [
        Claim(STUDY, "filtering sorts a network's layers into different classes",
              "Figs. 4-6: fragile, robust and antifragile layers side by side", math.nan,
              "distinct classes among the layers at the last epoch",
              f"{model}: {filter}, {score} score, epoch {int(last['epoch'].max())}",
              float(found.nunique()), math.nan, math.nan, (1.0, math.inf),
              "none: one network"),
        Claim(STUDY, "some layers keep their class over the epochs",
              "parameters invariant in characteristics over learning epochs", math.nan,
              "share of layers with one class at every epoch",
              f"{model}: {filter}, {score} score, epochs {sorted(set(here['epoch']))}",
              float(kept.mean()), math.nan, math.nan, (0.0, math.inf), "none: one network"),
    ]


def _retraining(model, table, filter, score):
    out = []
    for epoch, group in table.groupby("epoch"):
        by = {way: g.sort_values("replicate") for way, g in group.groupby("retrained")}
        selected = list(by["selected"]["top1_adversarial"])
        none = float(by["none"]["top1_adversarial"].iloc[0])
        mean, low, high = t_interval([s - none for s in selected])
        subject = f"{model}: from epoch {epoch}, {len(selected)} seeds ({filter}, {score})"
        warning = by["selected"]["warning"].iloc[0]
        out.append(Claim(STUDY, "retraining only the robust and antifragile layers raises "
                         "adversarial accuracy", "selective retraining improves accuracy on "
                         "adversarial test sets", math.nan,
                         "FGSM top-1 after selective retraining minus the checkpoint's",
                         subject + (f"; {warning}" if warning else ""), mean, low, high,
                         (0.0, math.inf), "t over the replicate seeds"))
        paired = [s - a for s, a in zip(selected, by["all"]["top1_adversarial"], strict=True)]
        mean, low, high = t_interval(paired)
        out.append(Claim(STUDY, "selective retraining beats retraining every parameter",
                         "selective retraining improves accuracy on adversarial test sets",
                         math.nan, "FGSM top-1 after selective retraining minus after all",
                         subject + (f"; {warning}" if warning else ""), mean, low, high,
                         (0.0, math.inf), "paired t over the replicate seeds"))
    return out
