"""The claims table: each seed paper's headline claims, judged from the study's own tables.

A study states its claims in a torch-free function (its `Study.claims`,
"module:function") that reads the tables it is given (name -> path) and
returns one `Claim` per claim it can judge. A claim is a measured quantity
(`estimate` with its 95% interval `low`, `high`) and the range `expected`
that the paper's claim puts it in. The verdict is computed here, never
written by a study:

    reproduced      the whole interval lies in the expected range
    not reproduced  the whole interval lies outside it
    inconclusive    the interval holds values inside and outside it

A claim whose table carries no interval (one network, one Monte Carlo
estimate) has `low` = `high` = NaN and is judged on its estimate; its
`interval` column says so. Torch-free: the claims step reads Parquet and
safetensors files with numpy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import pyarrow as pa
import scipy.stats

from lesion import files
from lesion.intervals import moments

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
COLUMNS = ["study", "claim", "paper", "paper_value", "measure", "subject", "estimate", "low",
           "high", "expected_low", "expected_high", "interval", "verdict"]
CLAIMS = files.TableKind("claims", "claims table", (
    "study", "claim", "paper", "measure", "estimate", "low", "high", "verdict"))


@dataclass(frozen=True)
class Claim:
    """One claim of a paper and what the study measured for it.

    claim: the claim in words; paper: where the paper makes it (figure, table)
    and its number in words; paper_value: that number (NaN when the paper
    gives none); measure: what `estimate` is; subject: the network or
    property it was measured on; expected: the range (low, high) that the
    claim puts the estimate in (use +-inf for one side); interval: how
    `low` and `high` were computed.
    """

    study: str
    claim: str
    paper: str
    paper_value: float
    measure: str
    subject: str
    estimate: float
    low: float
    high: float
    expected: tuple[float, float]
    interval: str


def verdict(estimate: float, low: float, high: float, expected: tuple[float, float]) -> str:
    """reproduced, not reproduced or inconclusive: where [low, high] (or the estimate alone,
    when the bounds are NaN) lies against the open range `expected`."""
    lo, hi = (estimate, estimate) if math.isnan(low) or math.isnan(high) else (low, high)
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    inside_low, inside_high = expected
    if lo > inside_low and hi < inside_high:
        return "reproduced"
    if hi <= inside_low or lo >= inside_high:
        return "not reproduced"
    return "inconclusive"


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% Welch t interval (NaN bounds with one value on a side)."""
    return welch_from(moments(a), moments(b))


def welch_from(a: tuple[float, float, int], b: tuple[float, float, int]
               ) -> tuple[float, float, float]:
    """As welch, from (mean, standard deviation, n) of each side."""
    (ma, sa, na), (mb, sb, nb) = a, b
    diff = ma - mb
    if na < 2 or nb < 2:
        return diff, math.nan, math.nan
    va, vb = sa**2 / na, sb**2 / nb
    if va + vb == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(scipy.stats.t.ppf(0.975, dof)) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def proportion_difference(p1: float, n1: int, p2: float, n2: int) -> tuple[float, float, float]:
    """p1 - p2 of two independent proportions and Newcombe's 95% interval (Wilson hybrid),
    which stays inside [-1, 1] where the Wald interval does not at 0 or 1."""
    l1, u1 = _wilson(p1, n1)
    l2, u2 = _wilson(p2, n2)
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def _wilson(p: float, n: int) -> tuple[float, float]:
    z = float(scipy.stats.norm.ppf(0.975))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def table(claims: Iterable[Claim]) -> pd.DataFrame:
    """The claims table: one row per claim, its verdict computed from its numbers."""
    rows = []
    for c in claims:
        row = asdict(c)
        row["expected_low"], row["expected_high"] = row.pop("expected")
        row["verdict"] = verdict(c.estimate, c.low, c.high, c.expected)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def write_claims(tables: Mapping[str, Mapping[str, str | os.PathLike]], out: str | os.PathLike,
                 csv: str | os.PathLike) -> pd.DataFrame:
    """The claims step: every study's claims (study group -> its tables) into `out` and `csv`."""
    from lesion import registry

    known = {s.group: s for s in registry.studies()}
    unknown = sorted(set(tables) - set(known))
    if unknown:
        raise ValueError(f"study {unknown[0]!r} is unknown; expected one of {sorted(known)}")
    claims = []
    for group, paths in tables.items():
        if not known[group].claims:
            raise ValueError(f"study {group!r} states no claims; expected tables only for "
                             f"{sorted(g for g, s in known.items() if s.claims)}")
        found = list(registry.named_function(known[group].claims)(paths))
        # the step's log: which study judged how many (none: its tables lack what each claim
        # needs, docs/studies.md "The claims table")
        print(f"{group}: {len(found)} claim{'s' if len(found) != 1 else ''} judged"
              + ("" if found else " (its tables lack the sweeps or models its claims need; "
                 "docs/studies.md, 'The claims table')"), flush=True)
        claims += found
    result = table(claims)
    files.write_table(pa.Table.from_pandas(result, preserve_index=False), out, kind=CLAIMS)
    with files.atomic_path(csv) as tmp:
        result.to_csv(tmp, index=False)
    return result
