"""`python -m lesion atlas table|figures ...`: the layer atlas from the studies' tables."""

from __future__ import annotations

import argparse

from lesion.cli.args import fraction, non_negative, number, option, require, steps
from lesion.cli.figure_args import figure_options

non_negative_int = number(int, lambda v: v >= 0, "an integer >= 0")


def table_triple(text: str) -> tuple[str, str, str, str]:
    """STUDY:MODEL:NAME=PATH, e.g. faults:mlp:bounds=results/digits/mlp/faults/bounds.parquet."""
    key, sep, path = text.partition("=")
    parts = key.split(":")
    if not sep or not path or len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected STUDY:MODEL:NAME=PATH such as "
                                         f"faults:mlp:bounds=results/digits/mlp/faults/bounds.parquet, "
                                         f"got {text!r}")
    return (*parts, path)


def model_path(text: str) -> tuple[str, str]:
    """MODEL=PATH, e.g. mlp=results/digits/mlp/layers.parquet."""
    model, sep, path = text.partition("=")
    if not sep or not model or not path:
        raise argparse.ArgumentTypeError(f"expected MODEL=PATH such as "
                                         f"mlp=results/digits/mlp/layers.parquet, got {text!r}")
    return model, path


def _table(args):
    tables: dict[str, dict[str, dict[str, str]]] = {}
    for group, model, name, path in args.tables:
        tables.setdefault(group, {}).setdefault(model, {})[name] = path
    layers = dict(args.layers)
    require(*(t[3] for t in args.tables), *layers.values())
    from lesion import atlas

    settings = {"within": args.within, "crash_level": args.crash_level, "bit_level": args.bit_level,
                "bootstrap": args.bootstrap, "seed": args.seed}
    table = atlas.write_atlas(tables, layers, settings, args.dataset, args.out, args.agreement_out)
    for model, part in table.groupby("model", sort=False):
        print(f"{model}: {part['layer'].nunique()} layers x {part['measure'].nunique()} measures "
              f"from {sorted(part['study'].unique())}")


def _figures(args):
    require(args.atlas, args.agreement)
    from lesion import atlas_plots

    for path in atlas_plots.write_figures(args.atlas, args.agreement, args.out_dir, svg=args.svg):
        print(f"wrote {path}")


def register(groups) -> None:
    step = steps(groups.add_parser("atlas", help="The layer atlas: every study's verdict on "
                                   "each layer, side by side, and their agreement."))
    s = step("table", _table, "One row per (model, layer, measure) from the studies' tables, "
             "and Spearman's rho between every pair of measures.")
    s.add_argument("--tables", type=table_triple, nargs="+", required=True,
                   help="each study's tables of a model as STUDY:MODEL:NAME=PATH (STUDY its CLI group)")
    s.add_argument("--layers", type=model_path, nargs="+", required=True,
                   help="each model's layer table (python -m lesion model layers) as MODEL=PATH")
    option(s, "--dataset")
    s.add_argument("--within", type=fraction, default=0.05,
                   help="a sweep's tolerance: the largest level whose top-1 stays within this "
                        "share of clean (default 0.05: 5 points)")
    s.add_argument("--crash-level", type=fraction, help="the crash probability p of the fault "
                   "study's measures (default: the middle of its levels)")
    s.add_argument("--bit-level", type=non_negative, help="the rate of a bit operator's loss "
                   "(default: its lowest level)")
    s.add_argument("--bootstrap", type=non_negative_int, default=1000,
                   help="bootstrap replicates of each rank correlation's interval (0: none)")
    s.add_argument("--seed", type=int, required=True, help="the study seed (the bootstrap's)")
    s.add_argument("--out", required=True, help="atlas table to write (.parquet)")
    s.add_argument("--agreement-out", required=True, help="agreement table to write (.parquet)")
    s = step("figures", _figures, "Per model a layers x measures heat map, the agreement "
             "matrices and the depth profile, as PNG and PDF.")
    s.add_argument("--atlas", required=True, help="the atlas table (python -m lesion atlas table)")
    s.add_argument("--agreement", required=True, help="its agreement table")
    s.add_argument("--out-dir", required=True, help="directory of the figures")
    figure_options(s)
