"""Eilertsen et al. (2020)'s headline claim, judged from the meta-classifiers' table: a
net's hyper-parameters can be read from its weights beyond chance (one claim per property
and meta-classifier: test accuracy minus chance, with the table's 95% interval)."""

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
        half = float(row["ci95"])
        by = f", {row['classifier']}" if "classifier" in meta.columns else ""
        diff = float(row["accuracy"]) - float(row["chance"])
        out.append(Claim(STUDY, f"{row['property']} is read from the weights beyond chance",
                         "Fig. 4: hyper-parameters readable above chance", math.nan,
                         "meta-classifier test accuracy minus chance",
                         f"{row['property']}{by}", diff, diff - half, diff + half,
                         (0.0, math.inf), "the table's 95% interval over test nets"))
    return out
