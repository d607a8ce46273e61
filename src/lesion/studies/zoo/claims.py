"""Eilertsen et al. (2020)'s headline claim, judged from the meta-classifiers' table: a
net's hyper-parameters can be read from its weights beyond chance (one claim per property
and meta-classifier: test accuracy minus chance, with the table's 95% interval), and the
learning rate, which the original regressed, beyond predicting its mean (R² > 0, with the
table's bootstrap interval). A property the converged nets could not classify (NaN
accuracy) has no claim."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from lesion import files
from lesion.claims import Claim
from lesion.studies.zoo import kinds

STUDY = "zoo (Eilertsen et al. 2020)"


def claims(tables: Mapping[str, str | os.PathLike]) -> list[Claim]:
    """Table `meta` (meta.parquet)."""
    meta = files.read_table(tables["meta"], kinds.META).to_pandas()
    out = []
    for _, row in meta.iterrows():
        by = f", {row['classifier']}" if "classifier" in meta.columns else ""
        if row.get("task", "classification") == "regression":
            if not math.isnan(float(row["r2"])):
                out.append(Claim(STUDY, f"{row['property']} is read from the weights beyond its mean",
                                 "regressed by the original's meta-classifiers", math.nan,
                                 "meta-test R² of log10 learning rate against the meta-train mean",
                                 f"{row['property']}{by}", float(row["r2"]), float(row["r2_low"]),
                                 float(row["r2_high"]), (0.0, math.inf),
                                 "bootstrap 95% interval over meta-test nets"))
            continue
        if math.isnan(float(row["accuracy"])):
            continue
        half = float(row["ci95"])
        diff = float(row["accuracy"]) - float(row["chance"])
        out.append(Claim(STUDY, f"{row['property']} is read from the weights beyond chance",
                         "Fig. 4: hyper-parameters readable above chance", math.nan,
                         "meta-classifier test accuracy minus chance",
                         f"{row['property']}{by}", diff, diff - half, diff + half,
                         (0.0, math.inf), "the table's 95% interval over test nets"))
    return out
