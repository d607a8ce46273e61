"""`python -m lesion perturbation STEP ...`: the perturbation study's steps."""

from __future__ import annotations

from lesion.cli.args import names, option, require, steps
from lesion.cli.figure_args import figure_options

FIGURES = ("performances", "weight_diffs", "num_weights")


def _figures(args):
    require(args.summary, *args.variants)
    from lesion.studies.perturbation import fragility, plots
    for name in args.names:
        plots.figure(name, summary=args.summary, variants=args.variants,
                     png=f"{args.out}/{name}.png", pdf=f"{args.out}/{name}.pdf", svg=args.svg,
                     accuracy=args.accuracy_axis)
    if args.fragility is not None:
        fragility.write_fragility(args.summary, args.fragility)


def register(groups) -> None:
    step = steps(groups.add_parser("perturbation", help="Weight perturbations (Cheney et al. 2017)."))
    s = step("figures", _figures, "Draw the study's figures of one model from its tables, as "
             "OUT/NAME.png and OUT/NAME.pdf (and OUT/NAME.svg with --svg).")
    s.add_argument("--names", type=names, default=list(FIGURES),
                   help=f"the figures, comma-separated, some of: {', '.join(FIGURES)}")
    option(s, "--summary", help="metrics summary (metrics_summary.parquet, as `sweep metrics` "
                                "writes it)")
    s.add_argument("--variants", nargs="+", default=[],
                   help="variants tables, for weight_diffs and num_weights (default: none)")
    option(s, "--out", metavar="DIR", help="directory of the figures")
    figure_options(s, accuracy=True)
    s.add_argument("--fragility", default=None,
                   help="per-layer fragility table to write (.csv: area under the top-1 curve, "
                        "level where top-1 halves) (default: not written)")
