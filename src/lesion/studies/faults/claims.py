"""El-Mhamdi et al.'s headline claims, judged from the fault study's tables.

b3 (the first-order Taylor bound) is exact up to O(p^2): at the smallest p
of the study its predicted standard deviation of the output error should
match the Monte Carlo one (within 10%). Networks trained with dropout, or
with the b3-variance regulariser, are more fault tolerant: their Monte
Carlo output error (L2 norm) at a crash probability is lower than the
network trained without either. The tables hold one Monte Carlo estimate
per network, so these claims are judged on the estimate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from lesion import files
from lesion.claims import Claim
from lesion.studies.faults import kinds

STUDY = "faults (El-Mhamdi et al.)"
MATCH = 0.1     # b3 within 10% of Monte Carlo at small p
P_TOLERANCE = 0.1   # the crash probability of the tolerance comparison (the largest <= it)


def claims(tables: Mapping[str, str | os.PathLike]) -> list[Claim]:
    """Tables `bounds:<model>` and `errors:<model>:<role>`, role base, dropout (the regime
    with the most dropout) or regularised (the b3-variance regulariser)."""
    out = []
    errors = {}
    for name, path in tables.items():
        kind, model, *role = name.split(":")
        if kind == "bounds":
            out.append(_b3(model, files.read_table(path, kinds.BOUNDS).to_pandas()))
        else:
            errors.setdefault(model, {})[role[0]] = files.read_table(path, kinds.ERRORS).to_pandas()
    for model, by_role in errors.items():
        for role, words in (("dropout", "dropout"), ("regularised", "the b3-variance regulariser")):
            if "base" in by_role and role in by_role:
                out.append(_tolerance(model, words, by_role["base"], by_role[role]))
    return out


def _b3(model, bounds):
    layer = bounds["layer"].iloc[0]
    p = float(bounds["p"].min())
    here = bounds[(bounds["layer"] == layer) & (bounds["p"] == p) & (bounds["bound"] == "b3")
                  & (bounds["statistic"] == "std")].iloc[0]
    ratio = float(here["value"]) / float(here["mc"])
    return Claim(STUDY, "b3 tracks the Monte Carlo error at small p",
                 "b3 is exact up to O(p^2)", 1.0,
                 "b3's std of the output error over the Monte Carlo one",
                 f"{model}: {layer} at p = {p:g}", ratio, math.nan, math.nan,
                 (1 - MATCH, 1 + MATCH), "none: one Monte Carlo estimate")


def _tolerance(model, words, base, trained):
    def error(table):
        layer = table["layer"].iloc[0]
        p = max(x for x in set(table["p"]) if x <= P_TOLERANCE + 1e-12)
        row = table[(table["layer"] == layer) & (table["p"] == p)
                    & (table["statistic"] == "norm_l2")]
        return float(row["value"].iloc[0]), layer, p

    plain, layer, p = error(base)
    other, _, _ = error(trained)
    return Claim(STUDY, f"{words} lowers the crash error",
                 "networks trained so are more fault tolerant", math.nan,
                 "Monte Carlo output error (L2) without, over with",
                 f"{model}: {layer} at p = {p:g}", plain / other, math.nan, math.nan,
                 (1.0, math.inf), "none: one network per regime")
