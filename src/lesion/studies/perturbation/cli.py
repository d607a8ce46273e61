"""`python -m lesion perturbation STEP ...`: the perturbation study's steps."""

from __future__ import annotations

from lesion.cli.args import names, require, steps

FIGURES = ("performances", "weight_diffs", "num_weights")


def _figures(args):
    require(args.summary, *args.variants)
    from lesion.studies.perturbation import plots
    for name in args.names:
        plots.figure(name, summary=args.summary, variants=args.variants,
                     png=f"{args.out}/{name}.png", pdf=f"{args.out}/{name}.pdf")


def register(groups) -> None:
    step = steps(groups.add_parser("perturbation", help="Weight perturbations (Cheney et al. 2017)."))
    s = step("figures", _figures, "Draw the study's figures of one model from its tables, as "
             "OUT/NAME.png and OUT/NAME.pdf.")
    s.add_argument("--names", type=names, default=list(FIGURES),
                   help=f"comma-separated, some of {','.join(FIGURES)} (default: all)")
    s.add_argument("--summary", required=True, help="metrics_summary.parquet")
    s.add_argument("--variants", nargs="+", default=[], help="variants tables")
    s.add_argument("--out", required=True, metavar="DIR", help="directory of the figures")
