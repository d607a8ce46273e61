"""`python -m lesion zoo STEP ...`: the weight-space study's steps."""

from __future__ import annotations

import argparse
import json

from lesion.cli.args import device, positive, require, steps
from lesion.cli.figure_args import figure_options


def _zoo_settings(text: str) -> dict:
    """The zoo section's net-making keys as JSON (what the rules pass)."""
    from lesion.studies.zoo.space import NET_KEYS

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected the zoo section as JSON, got {text[:80]!r} "
                                         f"({err})") from None
    if not isinstance(value, dict) or not set(NET_KEYS) <= set(value):
        raise argparse.ArgumentTypeError(f"expected a JSON mapping with {', '.join(NET_KEYS)} "
                                         f"(of the zoo section), got {text[:80]!r}")
    return value


def _window(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected FIRST,LAST snapshot indices such as 10,19, "
                                         f"got {text!r}")
    return int(parts[0]), int(parts[1])


def _unit(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _shard(args):
    require(args.train, args.test)
    from lesion.evaluate import set_threads
    from lesion.studies.zoo import shard
    set_threads(args.threads)
    shard.build(args.zoo, dataset=args.dataset, train=args.train, test=args.test,
                study_seed=args.seed, shard=args.shard, shards=args.shards,
                snapshots_out=args.snapshots_out, table_out=args.out, device=args.device,
                precision=args.precision)


def _merge(args):
    require(*args.tables, *args.snapshots)
    from lesion.studies.zoo import merge
    merge.merge(args.tables, args.snapshots, nets=args.nets, min_accuracy=args.min_accuracy,
                test_fraction=args.test_fraction, study_seed=args.seed, out=args.out,
                excluded_out=args.excluded_out)


def _meta(args):
    require(args.nets)
    from lesion.evaluate import set_threads
    from lesion.studies.zoo import meta
    set_threads(args.threads)
    meta.study(args.nets, dataset=args.dataset, properties=args.properties,
               slice_length=args.slice_length, window=args.window, steps=args.steps,
               batch_size=args.batch_size, learning_rate=args.learning_rate,
               positions=args.positions, trees=args.trees, study_seed=args.seed, out=args.out,
               snapshots_out=args.snapshots_out,
               device=args.device, precision=args.precision)


def _figures(args):
    require(args.meta, args.snapshots)
    from lesion.studies.zoo import plots
    plots.figures(meta=args.meta, snapshots=args.snapshots, out=args.out, svg=args.svg,
                  accuracy=args.accuracy_axis)


def register(groups) -> None:
    from lesion.studies.zoo.space import INPUTS

    step = steps(groups.add_parser("zoo", help="The weight-space zoo and its meta-classifiers "
                                   "(Eilertsen et al. 2020)."))
    s = step("shard", _shard, "Sample and train one shard of the zoo: snapshots and a table.",
             torch_threads=True)
    for name in ("--dataset", "--train", "--test", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--snapshots-out", required=True,
                   help="the shard's weight snapshots to write (.safetensors, one tensor per net)")
    s.add_argument("--zoo", type=_zoo_settings, required=True,
                   help="the zoo section's keys that make the nets (nets, epochs, snapshots, "
                        "learning_rate, choices) as JSON")
    s.add_argument("--shard", type=int, required=True, help="this shard's index, 0..shards-1")
    s.add_argument("--shards", type=positive, required=True,
                   help="how many shards the zoo is cut into, a positive integer")
    s.add_argument("--seed", type=int, required=True, help="the study seed")
    device(s)

    s = step("merge", _merge, "Merge the shard tables into nets.parquet (converged, split) and "
             "report the excluded share per property value.")
    s.add_argument("--tables", nargs="+", required=True, help="the shards' tables, one per shard")
    s.add_argument("--snapshots", nargs="+", required=True, help="the shards' snapshot files, same order")
    s.add_argument("--nets", type=positive, required=True, help="the zoo's number of nets")
    s.add_argument("--min-accuracy", type=_unit, required=True,
                   help="converged: final test accuracy at least this")
    s.add_argument("--test-fraction", type=_unit, required=True, help="share of converged nets in meta-test")
    s.add_argument("--seed", type=int, required=True, help="the study seed")
    s.add_argument("--out", required=True)
    s.add_argument("--excluded-out", required=True,
                   help="the excluded share per property value to write (.parquet)")

    s = step("meta", _meta, "Train and score the meta-classifiers of each property (a 1-D CNN on "
             "weight slices, a random forest on per-tensor statistics) and regress the learning rate.",
             torch_threads=True)
    s.add_argument("--nets", required=True, help="the merged zoo table (nets.parquet)")
    s.add_argument("--dataset", required=True, choices=sorted(INPUTS),
                   help="the dataset the zoo trained on (its shape gives each net's tensors), one of: "
                        f"{', '.join(sorted(INPUTS))}")
    s.add_argument("--properties", type=lambda t: [p for p in t.split(",") if p], required=True,
                   help="comma-separated properties to read from the weights, e.g. optimizer,activation")
    s.add_argument("--slice-length", type=positive, required=True,
                   help="consecutive weights per sample, a positive integer")
    s.add_argument("--window", type=_window, required=True, help="first,last snapshot index")
    s.add_argument("--steps", type=positive, required=True,
                   help="training steps of each meta-classifier, a positive integer")
    s.add_argument("--batch-size", type=positive, required=True)
    s.add_argument("--learning-rate", type=float, required=True)
    s.add_argument("--positions", type=positive, required=True,
                   help="slices per tensor of a meta-test net and snapshot, a positive integer")
    s.add_argument("--trees", type=positive, required=True,
                   help="trees of the statistics' random forests, a positive integer")
    s.add_argument("--seed", type=int, required=True, help="the study seed")
    s.add_argument("--out", required=True)
    s.add_argument("--snapshots-out", required=True,
                   help="accuracy per snapshot index to write (.parquet)")
    device(s)

    s = step("figures", _figures, "Draw the weight-space study's figures (accuracy, snapshots; "
             "PNG and PDF) into a directory.")
    s.add_argument("--meta", required=True, help="the meta-classifiers' table (meta.parquet)")
    s.add_argument("--snapshots", required=True, help="the per-snapshot table")
    s.add_argument("--out", required=True, help="directory of the figures")
    figure_options(s, accuracy=True)
