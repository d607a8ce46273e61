"""`python -m lesion <step> ...`: argument parsing only, one subcommand per rule.

Each subcommand imports its implementation lazily, so a step that plots never
imports torch and `--help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from lesion.files import InputFileError


def _levels(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.5,0.9, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _threads(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)


def _export(args):
    from lesion import data
    data.export(args.dataset, args.out)


def _tensors(args):
    from lesion import data
    data.make_tensors(args.dataset, args.raw, args.train_out, args.test_out,
                      test_fraction=args.test_fraction, seed=args.seed)


def _train(args):
    from lesion import train
    _threads(args)
    train.train(args.model, args.dataset, args.train, args.test, args.weights_out, args.curve_out,
                epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                weight_decay=args.weight_decay, seed=args.seed, device=args.device)


def _variants(args):
    from lesion import sweep
    _threads(args)
    sweep.write_variants(args.dataset, args.weights, args.layer, args.perturbation,
                         levels=args.levels, draws=args.draws, study_seed=args.seed,
                         out=args.out)


def _variant_weights(args):
    from lesion import sweep
    sweep.write_variant_weights(args.dataset, args.weights, args.variants, args.out)


def _predict(args):
    from lesion import predict
    _threads(args)
    if args.variants is None:
        predict.predict_clean(args.dataset, args.weights, args.test, args.out,
                              device=args.device, batch_size=args.batch_size)
    else:
        predict.predict_sweep(args.dataset, args.weights, args.test, args.variants, args.out,
                              device=args.device, batch_size=args.batch_size,
                              variants_per_pass=args.variants_per_pass)


def _metrics(args):
    from lesion import metrics
    metrics.write_metrics(args.dataset, args.model, clean=args.clean, variants=args.variants,
                          predictions=args.predictions, out=args.out,
                          summary_out=args.summary_out, summary_csv=args.summary_csv)


def _figure(args):
    from lesion import plots
    plots.figure(args.name, summary=args.summary, variants=args.variants, png=args.png,
                 pdf=args.pdf)


def _bench(args):
    from lesion import bench
    _threads(args)
    bench.sweep_speed(dataset=args.dataset, model=args.model, weights=args.weights,
                perturbation=args.perturbation, levels=args.levels, draws=args.draws,
                device=args.device, variants_per_pass=args.variants_per_pass)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lesion", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, func: Callable, help: str, *, torch_threads: bool = False):
        sub = steps.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        if torch_threads:
            sub.add_argument("--threads", type=_positive, default=1, help="torch CPU threads")
        return sub

    s = step("export", _export, "Write a dataset's raw data as it ships.")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True, help="raw.safetensors to write")

    s = step("tensors", _tensors, "Preprocess and split raw data into train/test tensors.")
    s.add_argument("--dataset", required=True)
    s.add_argument("--raw", required=True)
    s.add_argument("--train-out", required=True)
    s.add_argument("--test-out", required=True)
    s.add_argument("--test-fraction", type=float, default=0.25)
    s.add_argument("--seed", type=int, default=0)

    s = step("train", _train, "Train a registry model, seeded.", torch_threads=True)
    for name in ("--model", "--dataset", "--train", "--test", "--weights-out", "--curve-out"):
        s.add_argument(name, required=True)
    s.add_argument("--epochs", type=_positive, default=30)
    s.add_argument("--batch-size", type=_positive, default=64)
    s.add_argument("--learning-rate", type=float, default=1e-3)
    s.add_argument("--weight-decay", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")

    s = step("variants", _variants, "Draw every variant of one sweep; write its table.",
             torch_threads=True)
    for name in ("--dataset", "--weights", "--layer", "--perturbation", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--levels", type=_levels, required=True, help="e.g. 0.1,0.5,0.9")
    s.add_argument("--draws", type=_positive, required=True)
    s.add_argument("--seed", type=int, default=0, help="the study seed")

    s = step("variant-weights", _variant_weights, "Write every variant of a variants table as "
             "safetensors, each checked against its recorded sha256.")
    for name in ("--dataset", "--weights", "--variants"):
        s.add_argument(name, required=True)
    s.add_argument("--out", required=True, metavar="DIR", help="directory to create")

    s = step("predict", _predict, "Predict the test split with the clean model or every "
             "variant of a sweep.", torch_threads=True)
    for name in ("--dataset", "--weights", "--test", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--variants", help="variants table; without it, the unperturbed model")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--batch-size", type=_positive, default=512)
    s.add_argument("--variants-per-pass", type=_positive, default=8)

    s = step("metrics", _metrics, "Metrics of every variant of a model, and their summary.")
    for name in ("--dataset", "--model", "--clean", "--out", "--summary-out", "--summary-csv"):
        s.add_argument(name, required=True)
    s.add_argument("--variants", nargs="+", default=[], help="variants tables")
    s.add_argument("--predictions", nargs="+", default=[], help="predictions, same order")

    s = step("figure", _figure, "Draw one figure from a study's tables.")
    s.add_argument("name", help="performances, weight_diffs or num_weights")
    s.add_argument("--summary", required=True)
    s.add_argument("--variants", nargs="+", default=[])
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)

    bench = steps.add_parser("bench", help="Benchmarks.").add_subparsers(dest="what", required=True)
    s = bench.add_parser("sweep", help="Time one sweep per layer: prefix-cached and batched "
                         "against a naive per-variant loop, in the same run.")
    s.set_defaults(func=_bench)
    s.add_argument("--dataset", default="digits")
    s.add_argument("--model", default="cnn")
    s.add_argument("--weights", default=None,
                   help="trained weights (default: results/{dataset}/{model}/weights.safetensors "
                        "when present, else a freshly initialised network)")
    s.add_argument("--perturbation", default="gaussian")
    s.add_argument("--levels", type=_levels, default=_levels("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"))
    s.add_argument("--draws", type=_positive, default=5)
    s.add_argument("--device", default="auto")
    s.add_argument("--variants-per-pass", type=_positive, default=8)
    s.add_argument("--threads", type=_positive, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (InputFileError, ValueError, RuntimeError) as err:
        print(f"lesion {args.step}: error: {err}", file=sys.stderr)
        return 1
    return 0
