"""`python -m lesion faults STEP ...`: the fault study's steps."""

from __future__ import annotations

from lesion.cli.args import (
    levels,
    names,
    network,
    non_negative,
    positive,
    require,
    steps,
    training_kwargs,
    training_options,
)


def _bounds(args):
    require(args.weights, args.test)
    from lesion.evaluate import set_threads
    from lesion.studies.faults import bounds
    set_threads(args.threads)
    bounds.fault_study(args.dataset, args.weights, args.test, layers=args.layers,
                       levels=args.levels, repetitions=args.repetitions, study_seed=args.seed,
                       errors_out=args.errors_out, bounds_out=args.bounds_out,
                       device=args.device, batch_size=args.batch_size,
                       precision=args.precision, reps_per_pass=args.reps_per_pass, inputs=args.inputs)


def _train(args):
    options = training_kwargs(args)
    from lesion import train
    from lesion.evaluate import set_threads
    from lesion.studies.faults import bounds
    set_threads(args.threads)
    extra = bounds.b3_loss(args.b3_variance) if args.b3_variance else None
    train.train(args.model, args.dataset, args.train, args.test, args.weights_out, args.curve_out,
                **options, extra_loss=extra,
                metadata={"dropout": args.dropout, "b3_variance": args.b3_variance})


def _figure(args):
    require(*args.errors, *args.bounds)
    from lesion.studies.faults import plots
    plots.figure(args.name, errors=args.errors, bounds=args.bounds, labels=args.labels,
                 png=args.png, pdf=args.pdf, csv=args.csv)


def register(groups) -> None:
    step = steps(groups.add_parser("faults", help="Crash faults and bounds b1-b4 (El-Mhamdi et al.)."))
    s = step("bounds", _bounds, "Crash faults in each layer: Monte Carlo error and bounds "
             "b1-b4.", torch_threads=True)
    for name in ("--dataset", "--weights", "--test", "--errors-out", "--bounds-out"):
        s.add_argument(name, required=True)
    network(s)
    s.add_argument("--layers", type=names, required=True, help="e.g. fc1,fc2")
    s.add_argument("--levels", type=levels, required=True, help="crash probabilities p")
    s.add_argument("--repetitions", type=positive, required=True, help="Monte Carlo repetitions")
    s.add_argument("--seed", type=int, required=True, help="the study seed")
    s.add_argument("--reps-per-pass", type=positive, default=100)
    s.add_argument("--inputs", type=positive, default=None,
                   help="the first N test inputs (default: all)")

    s = step("train", _train, "Train a model in a fault-tolerance regime (dropout, the "
             "b3-variance regulariser).", torch_threads=True)
    training_options(s)
    s.add_argument("--b3-variance", type=non_negative, required=True,
                   help="weight of the b3-variance regulariser")

    s = step("figure", _figure, "Draw a figure of the fault study.")
    s.add_argument("name", help="bounds or tolerance")
    s.add_argument("--errors", nargs="+", required=True, help="errors tables")
    s.add_argument("--bounds", nargs="+", required=True, help="bounds tables, same order")
    s.add_argument("--labels", nargs="+", default=None, help="one per table pair (tolerance)")
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)
    s.add_argument("--csv", default=None, help="the numbers drawn, as CSV (for the report)")
