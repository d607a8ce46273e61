"""`python -m lesion bench jobs`: what a built study's jobs cost, from Snakemake's benchmark files.

Every rule writes `benchmarks/<rule>/....tsv` (Snakemake's `benchmark:`),
one row per job with its wall time `s`, `cpu_time` and peak resident memory
`max_rss` (MB). Summed per rule (the memory: its largest job), they tell
where a study's time and memory go; given a baseline directory too (the
same study built from another commit), both are printed side by side.
Torch-free, so it costs nothing to run after a study.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def job_costs(benchmarks: str | Path) -> pd.DataFrame:
    """Per rule: jobs, summed wall time `s` and `cpu_time` (seconds), and `max_rss_mb`, the
    peak resident memory of its largest job; a total row (sums, and the largest job's peak).
    A job Snakemake could not measure has no peak (NaN)."""
    root = Path(benchmarks)
    # A named study (config `study: NAME`) writes benchmarks/NAME/<rule>/...: every study has
    # a `tensors` job, so a directory holding tensors/ is a study's, not a rule's (a rule's
    # holds its datasets). Its jobs are its own study's, summed when it is asked for.
    studies = sorted(d for d in root.iterdir() if (d / "tensors").is_dir()) if root.is_dir() else []
    for study in studies:
        print(f"{study}: the benchmarks of study {study.name!r}, left out "
              f"(python -m lesion bench jobs {study} sums them)", file=sys.stderr)
    rows = []
    for tsv in sorted(t for t in root.rglob("*.tsv") if not any(s in t.parents for s in studies)):
        frame = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": tsv.relative_to(root).parts[0], "jobs": 1,
                     "s": float(frame["s"].iloc[-1]), "cpu_time": float(frame["cpu_time"].iloc[-1]),
                     "max_rss_mb": pd.to_numeric(frame["max_rss"], errors="coerce").iloc[-1]})
    if not rows:
        raise FileNotFoundError(f"{root}: no benchmark files; expected the benchmarks/ directory "
                                "of a built study")
    table = pd.DataFrame(rows).groupby("rule").agg(
        {"jobs": "sum", "s": "sum", "cpu_time": "sum", "max_rss_mb": "max"})
    table.loc["total"] = [*table[["jobs", "s", "cpu_time"]].sum(), table["max_rss_mb"].max()]
    return table.astype({"jobs": int})


def compare(benchmarks: str, baseline: str | None = None) -> pd.DataFrame:
    """Print the job costs of `benchmarks`, beside `baseline`'s when given; return the table."""
    table = job_costs(benchmarks)
    if baseline is not None:
        table = job_costs(baseline).join(table, how="outer", lsuffix="_baseline").fillna(0)
        table = table.loc[[r for r in table.index if r != "total"] + ["total"]]
    print(table.round(1).to_string())
    return table
