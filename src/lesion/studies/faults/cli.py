"""`python -m lesion faults STEP ...`: the fault study's steps."""

from __future__ import annotations

from lesion.cli.args import (
    levels,
    names,
    network,
    non_negative,
    option,
    positive,
    require,
    steps,
    training_options,
)
from lesion.cli.figure_args import figure_options


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
    from lesion.cli.training import training_setup

    setup = training_setup(args)
    from lesion import train
    from lesion.studies.faults import bounds
    setup["hooks"].append(train.Hook(  # the regime: its b3 term; its dropout is the options'
        loss=bounds.b3_loss(args.b3_variance) if args.b3_variance else None,
        metadata={"dropout": args.dropout, "b3_variance": args.b3_variance}))
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    train.train(dataset=args.dataset, train_path=args.train, test_path=args.test,
                weights_out=args.weights_out, curve_out=args.curve_out, **setup)


def _figure(args):
    require(*args.errors, *args.bounds)
    from lesion.studies.faults import plots
    plots.figure(args.name, errors=args.errors, bounds=args.bounds, labels=args.labels,
                 png=args.png, pdf=args.pdf, csv=args.csv, svg=args.svg)


def register(groups) -> None:
    step = steps(groups.add_parser("faults", help="Crash faults and bounds b1-b4 (El-Mhamdi et al.)."))
    s = step("bounds", _bounds, "Crash faults in each layer: Monte Carlo error and bounds "
             "b1-b4.", torch_threads=True)
    option(s, "--dataset", "--weights", "--test")
    option(s, "--errors-out", help="Monte Carlo errors table to write (.parquet)")
    option(s, "--bounds-out", help="bounds table to write (.parquet)")
    network(s)
    option(s, "--layers", type=names, help="comma-separated weight layers of the model, e.g. "
                                           "fc1,fc2 (conv1..convN then fc1..fcM)")
    option(s, "--levels", type=levels,
           help="comma-separated crash probabilities p, each in [0, 1], e.g. 0.01,0.1")
    option(s, "--repetitions", type=positive,
           help="Monte Carlo repetitions per level, an integer >= 2")
    option(s, "--seed", type=int)
    s.add_argument("--reps-per-pass", type=positive, default=100,
                   help="repetitions evaluated per pass, a positive integer")
    s.add_argument("--inputs", type=positive, default=None,
                   help="use the first N test inputs, a positive integer (default: all)")

    s = step("train", _train, "Train a model in a fault-tolerance regime (dropout, the "
             "b3-variance regulariser).", torch_threads=True)
    training_options(s)
    option(s, "--b3-variance", type=non_negative,
           help="weight of the b3-variance regulariser, a number >= 0 (0: off)")

    s = step("figure", _figure, "Draw a figure of the fault study.")
    s.add_argument("name", help="the figure, one of: bounds (one network), tolerance "
                                 "(networks side by side)")
    option(s, "--errors", nargs="+", help="errors tables (as `faults bounds` writes them)")
    option(s, "--bounds", nargs="+", help="bounds tables, one per errors table, same order")
    s.add_argument("--labels", nargs="+", default=None,
                   help="one label per table pair, for tolerance (default: 0, 1, ...)")
    option(s, "--png", help="figure to write (.png)")
    option(s, "--pdf", help="figure to write (.pdf)")
    s.add_argument("--csv", default=None,
                   help="the numbers drawn, as CSV, for the report (default: not written)")
    figure_options(s)
