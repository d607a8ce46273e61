"""`python -m lesion filtering STEP ...`: the synaptic filtering study's steps (Pravin et al.)."""

from __future__ import annotations

import argparse

from lesion.cli.args import (
    MODEL_NAME,
    epochs,
    gigabytes,
    names,
    network,
    non_negative,
    positive,
    require,
    steps,
)
from lesion.cli.figure_args import figure_options


def pair(text: str) -> tuple[str, str]:
    """NAME=PATH, e.g. clean=results/digits/tensors/test.safetensors or 5=checkpoints/epoch5..."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH such as clean=test.safetensors, "
                                         f"got {text!r}")
    return name, path


def _checkpoints(items: list[tuple[str, str]]) -> dict[int, str]:
    out = {}
    for epoch, path in items:
        if not epoch.isdigit() or int(epoch) < 1:
            raise ValueError(f"checkpoint {epoch}={path}: expected EPOCH=PATH with an epoch >= 1")
        out[int(epoch)] = path
    require(*out.values())
    return out


def _sweep(args):
    checkpoints = _checkpoints(args.checkpoints)
    require(args.test)
    from lesion.evaluate import set_threads
    from lesion.studies.filtering import filters
    set_threads(args.threads)
    filters.filter_checkpoints(args.dataset, checkpoints, args.test, args.out_dir,
                               eps=args.eps, layers=args.layers, filters=args.filters, study_seed=args.seed,
                               device=args.device, batch_size=args.batch_size,
                               variants_per_pass=args.variants_per_pass,
                               cache_gb=args.cache_gb, precision=args.precision)


def _scores(args):
    from lesion.studies.filtering import layout
    testsets = (args.clean, args.adversarial)
    inputs = {e: (str(layout.variants_path(args.dir, e)),
                  {t: (str(layout.predictions_path(args.dir, e, t, unfiltered=True)),
                       str(layout.predictions_path(args.dir, e, t))) for t in testsets})
              for e in args.epochs}
    require(*(v for variants, sets in inputs.values() for v in (variants, *sum(sets.values(), ()))))
    from lesion.studies.filtering import scores
    scores.write_scores(args.dataset, args.model, epochs=inputs, clean=args.clean,
                        adversarial=args.adversarial, tol=args.tol,
                        metrics_out=args.metrics_out, curves_out=args.curves_out,
                        scores_out=args.scores_out)


def _retrain(args):
    checkpoints = _checkpoints(args.checkpoints)
    adversarial = _checkpoints(args.adversarial)
    require(args.scores, args.train, args.test)
    from lesion.evaluate import set_threads
    from lesion.studies.filtering import retrain
    set_threads(args.threads)
    retrain.retrain(args.dataset, args.model, checkpoints, scores=args.scores,
                    train_path=args.train, test_path=args.test, adversarial=adversarial,
                    out_dir=args.out_dir, out=args.out, epochs=args.epochs, seeds=args.seeds,
                    filter=args.filter,
                    score=args.score, eps=args.eps, batch_size=args.train_batch_size,
                    learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                    seed=args.seed, device=args.device, precision=args.precision,
                    eval_batch_size=args.batch_size)


def _figures(args):
    require(args.curves, args.scores, args.retraining)
    from lesion.studies.filtering import plots
    plots.figures(curves=args.curves, scores=args.scores, retraining=args.retraining,
                  filters=args.filters, clean=args.clean, adversarial=args.adversarial,
                  out_dir=args.out_dir, svg=args.svg, accuracy=args.accuracy_axis)


def _invariance(args):
    require(*args.scores)
    from lesion.studies.filtering import plots
    plots.write_invariance(args.scores, png=args.png, pdf=args.pdf, csv=args.csv, svg=args.svg)


# What the steps' file and name options are (the shared ones: lesion.cli.args.HELP).
DESCRIBE = {
    "--model": MODEL_NAME,
    "--dir": "the model's filtering directory the sweep wrote (results/{dataset}/{model}/filtering)",
    "--metrics-out": "metrics table to write (.parquet, one row per variant, test set and metric)",
    "--curves-out": "normalised accuracy curves to write (.parquet)",
    "--scores-out": "filtering scores and classes to write (.parquet)",
    "--scores": "the model's filtering scores table (scores.parquet)",
    "--adversarial": "the adversarial test set's name in the sweep's outputs, e.g. fgsm",
    "--clean": "the clean test set's name in the sweep's outputs, e.g. clean",
    "--out-dir": "directory of this step's outputs (results/{dataset}/{model}/filtering)",
    "--filter": "the filter whose classes select the layers, one of the study's filters",
    "--score": "the score whose classes select the layers: clean, adversarial or difference",
    "--curves": "the model's curves table (curves.parquet)",
    "--retraining": "the model's retraining table (retraining.parquet)",
}


def register(groups) -> None:
    from lesion.catalog import FILTERS

    step = steps(groups.add_parser("filtering", help="Synaptic filtering: fragile, robust and "
                                   "antifragile parameters (Pravin et al. 2024)."))
    s = step("sweep", _sweep, "Filter every layer (and all at once) of checkpoints, 3 filters "
             "x 25 alphas, and predict every test set.", torch_threads=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--checkpoints", type=pair, nargs="+", required=True,
                   help="checkpoints as EPOCH=WEIGHTS pairs, e.g. 5=epoch5.safetensors")
    s.add_argument("--test", required=True,
                   help="the clean test split (results/{dataset}/tensors/test.safetensors)")
    s.add_argument("--eps", type=non_negative, required=True,
                   help="FGSM step size of each checkpoint's adversarial set")
    s.add_argument("--layers", type=names, required=True,
                   help="comma-separated layers to filter, e.g. conv1,fc1,all")
    s.add_argument("--filters", type=names, required=True,
                   help="comma-separated filters, some of: " + ", ".join(FILTERS))
    s.add_argument("--seed", type=int, required=True, help="the study seed")
    s.add_argument("--out-dir", required=True, help=DESCRIBE["--out-dir"])
    network(s)
    s.add_argument("--variants-per-pass", type=positive, required=True)
    s.add_argument("--cache-gb", type=gigabytes, required=True)

    s = step("scores", _scores, "Metrics, normalised curves, filtering scores and classes of "
             "a model's filtering sweep.")
    for name in ("--dataset", "--model", "--dir", "--metrics-out", "--curves-out",
                 "--scores-out"):
        s.add_argument(name, required=True, help=DESCRIBE.get(name))
    s.add_argument("--epochs", type=epochs, required=True,
                   help="comma-separated checkpoint epochs, e.g. 5,10,20")
    s.add_argument("--clean", required=True, help=DESCRIBE["--clean"])
    s.add_argument("--adversarial", required=True, help=DESCRIBE["--adversarial"])
    s.add_argument("--tol", type=non_negative, required=True,
                   help="robust within [-tol, tol]")

    s = step("retrain", _retrain, "Retrain checkpoints four ways (none, all, selected, "
             "fragile) and judge them on clean and FGSM test sets.", torch_threads=True)
    for name in ("--dataset", "--model", "--scores", "--train", "--test", "--out-dir", "--out",
                 "--filter", "--score"):
        s.add_argument(name, required=True, help=DESCRIBE.get(name))
    s.add_argument("--checkpoints", type=pair, nargs="+", required=True,
                   help="checkpoints as EPOCH=WEIGHTS pairs, e.g. 5=epoch5.safetensors")
    s.add_argument("--adversarial", type=pair, nargs="+", required=True,
                   help="each checkpoint's FGSM set as EPOCH=FILE pairs (the sweep's "
                        "epoch{E}/fgsm.safetensors)")
    s.add_argument("--epochs", type=positive, required=True, help="epochs of retraining")
    s.add_argument("--seeds", type=positive, required=True,
                   help="replicates of each way that trains, a positive integer")
    s.add_argument("--eps", type=non_negative, required=True,
                   help="FGSM step size of the sets regenerated against each network")
    s.add_argument("--train-batch-size", type=positive, required=True,
                   help="images per retraining step, a positive integer")
    s.add_argument("--learning-rate", type=float, required=True)
    s.add_argument("--weight-decay", type=float, required=True)
    s.add_argument("--seed", type=int, required=True, help="the study seed")
    network(s)

    s = step("figures", _figures, "Heat maps, class map and retraining figure of a model.")
    for name in ("--curves", "--scores", "--retraining", "--clean", "--adversarial",
                 "--out-dir"):
        s.add_argument(name, required=True, help=DESCRIBE.get(name))
    s.add_argument("--filters", type=names, required=True,
                   help="comma-separated filters drawn, some of: " + ", ".join(FILTERS))
    figure_options(s, accuracy=True)

    s = step("invariance", _invariance, "Which layers keep their class over the epochs, for "
             "every model.")
    s.add_argument("--scores", nargs="+", required=True,
                   help="every model's filtering scores table")
    for name in ("--png", "--pdf", "--csv"):
        s.add_argument(name, required=True, help=DESCRIBE.get(name))
    figure_options(s)
