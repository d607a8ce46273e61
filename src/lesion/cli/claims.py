"""`python -m lesion claims table ...`: the seed papers' claims judged from a study's tables."""

from __future__ import annotations

import argparse

from lesion.cli.args import require, steps


def table_pair(text: str) -> tuple[str, str, str]:
    """STUDY:NAME=PATH, e.g. faults:bounds:mlp=results/digits/mlp/faults/bounds.parquet."""
    key, sep, path = text.partition("=")
    group, colon, name = key.partition(":")
    if not sep or not colon or not group or not name or not path:
        raise argparse.ArgumentTypeError(f"expected STUDY:NAME=PATH such as "
                                         f"zoo:meta=results/digits/zoo/meta.parquet, got {text!r}")
    return group, name, path


def _table(args):
    tables: dict[str, dict[str, str]] = {}
    for group, name, path in args.tables:
        tables.setdefault(group, {})[name] = path
    require(*(path for _, _, path in args.tables))
    from lesion import claims
    result = claims.write_claims(tables, args.out, args.csv)
    for row in result.itertuples():
        print(f"{row.verdict:>15}  {row.study}: {row.claim} ({row.subject}): {row.estimate:.4g} "
              f"[{row.low:.4g}, {row.high:.4g}]")


def register(groups) -> None:
    step = steps(groups.add_parser("claims", help="The seed papers' headline claims, judged "
                                   "from a study's tables."))
    s = step("table", _table, "One row per claim: the paper's number, ours with its 95% "
             "interval, and the verdict computed from them.")
    s.add_argument("--tables", type=table_pair, nargs="+", required=True,
                   help="each study's tables as STUDY:NAME=PATH (STUDY its CLI group)")
    s.add_argument("--out", required=True, help="claims table to write (.parquet)")
    s.add_argument("--csv", required=True, help="the same table as CSV")
