"""`python -m lesion <step> ...`: argument parsing only, one subcommand per rule.

Each subcommand imports its implementation lazily, so a step that plots never
imports torch and `--help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence

from lesion.files import InputFileError, check_output

# Arguments that name files a step writes (checked up front by main).
OUTPUTS = ("out", "train_out", "test_out", "weights_out", "curve_out", "summary_out",
           "summary_csv", "png", "pdf")


def _levels(text: str) -> list[float]:
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        levels = [math.nan]
    if not levels or not all(math.isfinite(x) for x in levels):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.5,0.9, got {text!r}")
    return levels


def _bits(text: str) -> list[str | int]:
    """Comma-separated bit fields (sign, exponent, mantissa, all) or bit indices."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    fields = ("all", "sign", "exponent", "mantissa")
    if not items or not all(x in fields or x.isdigit() for x in items):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated bit fields {list(fields)} or bit indices such as "
            f"30,29, got {text!r}")
    return [int(x) if x.isdigit() else x for x in items]


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as fc1,fc2, got {text!r}")
    return names


def _number(convert: Callable[[str], float], accept: Callable[[float], bool],
            expected: str) -> Callable[[str], float]:
    """An argparse type: `convert` the text, refuse it unless `accept`-ed, saying what was expected."""
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not accept(value):  # NaN is never accepted
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_fraction = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")
_gigabytes = _number(float, lambda v: 0 < v < math.inf, "a positive number of GB such as 4")
_positive = _number(int, lambda v: v >= 1, "a positive integer")


def _require(*paths: str | None) -> None:
    """Refuse a missing input file before paying for importing torch."""
    for path in paths:
        if path is not None and not os.path.isfile(path):
            what = "a directory" if os.path.isdir(path) else "not found"
            raise InputFileError(f"{path}: {what}; expected an input file")


def _threads(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)


def _export(args):
    from lesion import data
    data.export(args.dataset, args.out)


def _tensors(args):
    from lesion.catalog import DATASET_SOURCES

    if DATASET_SOURCES.get(args.dataset) != "download":  # a download is a directory
        _require(args.raw)
    from lesion import data
    data.make_tensors(args.dataset, args.raw, args.train_out, args.test_out,
                      test_fraction=args.test_fraction, seed=args.seed)


def _download(args):
    from lesion import fetch
    fetch.download_dataset(args.dataset, args.out, mirror=args.mirror)


def _imagenet_tensors(args):
    from lesion import imagenet
    imagenet.decode(args.path, args.test_out, weights=args.weights.split(","), workers=args.workers)


def _download_weights(args):
    from lesion import fetch
    fetch.download_weights(args.weights, args.out, mirror=args.mirror)


def _pretrained(args):
    _require(args.pth)
    from lesion import fetch
    fetch.import_weights(args.model, args.pth, args.out)


def _train(args):
    from lesion.catalog import DATASET_MODELS

    if args.model not in DATASET_MODELS.get(args.dataset, (args.model,)):
        raise ValueError(f"dataset {args.dataset!r} cannot feed model {args.model!r}; expected "
                         f"one of {list(DATASET_MODELS[args.dataset])}")
    _require(args.train, args.test)
    from lesion import train
    _threads(args)
    train.train(args.model, args.dataset, args.train, args.test, args.weights_out, args.curve_out,
                epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                weight_decay=args.weight_decay, seed=args.seed, device=args.device,
                dropout=args.dropout, b3_variance=args.b3_variance)


def _variants(args):
    from lesion.catalog import check_sweep

    check_sweep(args.perturbation, args.levels)
    _require(args.weights)
    from lesion import sweep
    _threads(args)
    options = {"bits": args.bits} if args.bits is not None else {}
    sweep.write_variants(args.dataset, args.weights, args.layer, args.perturbation,
                         levels=args.levels, draws=args.draws, study_seed=args.seed,
                         out=args.out, options=options)


def _variant_weights(args):
    _require(args.weights, args.variants)
    from lesion import sweep
    sweep.write_variant_weights(args.dataset, args.weights, args.variants, args.out)


def _predict(args):
    _require(args.weights, args.test, args.variants)
    from lesion import predict
    _threads(args)
    if args.variants is None:
        predict.predict_clean(args.dataset, args.weights, args.test, args.out,
                              device=args.device, batch_size=args.batch_size)
    else:
        predict.predict_sweep(args.dataset, args.weights, args.test, args.variants, args.out,
                              device=args.device, batch_size=args.batch_size,
                              variants_per_pass=args.variants_per_pass,
                              cache_gb=args.cache_gb)


def _metrics(args):
    _require(args.clean, *args.variants, *args.predictions)
    from lesion import metrics
    metrics.write_metrics(args.dataset, args.model, clean=args.clean, variants=args.variants,
                          predictions=args.predictions, out=args.out,
                          summary_out=args.summary_out, summary_csv=args.summary_csv)


def _figure(args):
    _require(args.summary, *args.variants)
    from lesion import plots
    plots.figure(args.name, summary=args.summary, variants=args.variants, png=args.png,
                 pdf=args.pdf)


def _bench(args):
    from lesion import bench
    _threads(args)
    bench.sweep_speed(dataset=args.dataset, model=args.model, weights=args.weights,
                perturbation=args.perturbation, levels=args.levels, draws=args.draws,
                device=args.device, variants_per_pass=args.variants_per_pass)


def _faults(args):
    _require(args.weights, args.test)
    from lesion import faults
    _threads(args)
    faults.fault_study(args.dataset, args.weights, args.test, layers=args.layers,
                       levels=args.levels, repetitions=args.repetitions, study_seed=args.seed,
                       errors_out=args.errors_out, bounds_out=args.bounds_out,
                       device=args.device, batch_size=args.batch_size,
                       reps_per_pass=args.reps_per_pass, inputs=args.inputs)


def _fault_figure(args):
    _require(*args.errors, *args.bounds)
    from lesion import faultplots
    faultplots.figure(args.name, errors=args.errors, bounds=args.bounds, labels=args.labels,
                      png=args.png, pdf=args.pdf)


def _bench_dag(args):
    from lesion import dagbench
    dagbench.dag_speed(args.configfile, repeats=args.repeats, snakefile=args.snakefile)


def _bench_faults(args):
    from lesion import bench
    _threads(args)
    bench.fault_speed(dataset=args.dataset, model=args.model, weights=args.weights,
                      layers=args.layers, p=args.p, repetitions=args.repetitions,
                      device=args.device, reps_per_pass=args.reps_per_pass,
                      images=args.images)


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

    mirror_help = ("base URL of a mirror holding the official file names (default: the official "
                   "sources); checksums are the official ones either way")
    s = step("download", _download, "Download a dataset (mnist, cifar10) through torchvision, "
             "md5-checked, into a directory that appears only when complete.")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True, metavar="DIR", help="directory to create")
    s.add_argument("--mirror", default=None, help=mirror_help)

    s = step("imagenet-tensors", _imagenet_tensors, "Decode the ILSVRC2012 validation images "
             "once (the weights' transforms, stored as uint8).")
    s.add_argument("--path", required=True, help="ImageFolder directory: <path>/<wnid>/*.JPEG")
    s.add_argument("--test-out", required=True)
    s.add_argument("--weights", required=True,
                   help="torchvision weights whose transforms to use, comma-separated, e.g. "
                        "ResNet18_Weights.IMAGENET1K_V1 (all must share one)")
    s.add_argument("--workers", type=_positive, default=1, help="decoding processes")

    s = step("download-weights", _download_weights, "Download pretrained torchvision weights, "
             "sha256-prefix checked.")
    s.add_argument("--weights", required=True, help="full enum name, e.g. ResNet18_Weights.IMAGENET1K_V1")
    s.add_argument("--out", required=True, help=".pth file to write")
    s.add_argument("--mirror", default=None, help=mirror_help)

    s = step("pretrained", _pretrained, "Store downloaded pretrained weights as safetensors "
             "(loaded with weights_only=True).")
    for name in ("--model", "--pth", "--out"):
        s.add_argument(name, required=True)

    s = step("tensors", _tensors, "Preprocess and split raw data into train/test tensors.")
    s.add_argument("--dataset", required=True)
    s.add_argument("--raw", required=True)
    s.add_argument("--train-out", required=True)
    s.add_argument("--test-out", required=True)
    s.add_argument("--test-fraction", type=_fraction, default=0.25)
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
    s.add_argument("--dropout", type=float, default=0.0,
                   help="dropout rate on every hidden layer's neurons while training")
    s.add_argument("--b3-variance", type=float, default=0.0,
                   help="weight of the b3-variance regulariser (fault tolerance)")

    s = step("variants", _variants, "Draw every variant of one sweep; write its table.",
             torch_threads=True)
    for name in ("--dataset", "--weights", "--layer", "--perturbation", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--levels", type=_levels, required=True, help="e.g. 0.1,0.5,0.9")
    s.add_argument("--draws", type=_positive, required=True)
    s.add_argument("--seed", type=int, default=0, help="the study seed")
    s.add_argument("--bits", type=_bits, default=None,
                   help="bit faults only: bit positions to hit, e.g. sign,exponent or 30,29 "
                        "(default: all bits)")

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
    s.add_argument("--cache-gb", type=_gigabytes, default=4.0,
                   help="bound on the clean prefix activations held at once (GB)")

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

    s = step("faults", _faults, "Crash faults in each layer: Monte Carlo error and bounds "
             "b1-b4 (El-Mhamdi et al.).", torch_threads=True)
    for name in ("--dataset", "--weights", "--test", "--errors-out", "--bounds-out"):
        s.add_argument(name, required=True)
    s.add_argument("--layers", type=_names, required=True, help="e.g. fc1,fc2")
    s.add_argument("--levels", type=_levels, required=True, help="crash probabilities p")
    s.add_argument("--repetitions", type=_positive, required=True, help="Monte Carlo repetitions")
    s.add_argument("--seed", type=int, default=0, help="the study seed")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--batch-size", type=_positive, default=512)
    s.add_argument("--reps-per-pass", type=_positive, default=100)
    s.add_argument("--inputs", type=_positive, default=None,
                   help="the first N test inputs (default: all)")

    s = step("fault-figure", _fault_figure, "Draw a figure of the fault study.")
    s.add_argument("name", help="bounds or tolerance")
    s.add_argument("--errors", nargs="+", required=True, help="errors tables")
    s.add_argument("--bounds", nargs="+", required=True, help="bounds tables, same order")
    s.add_argument("--labels", nargs="+", default=None, help="one per table pair (tolerance)")
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)

    def _bench_model(s: argparse.ArgumentParser, model: str) -> None:
        """The network a benchmark times: dataset, model, weights."""
        s.add_argument("--dataset", default="digits")
        s.add_argument("--model", default=model)
        s.add_argument("--weights", default=None,
                       help="trained weights (default: results/{dataset}/{model}/weights.safetensors "
                            "when present, else a freshly initialised network)")

    bench = steps.add_parser("bench", help="Benchmarks.").add_subparsers(dest="what", required=True)
    s = bench.add_parser("sweep", help="Time one sweep per layer: prefix-cached and batched "
                         "against a naive per-variant loop, in the same run.")
    s.set_defaults(func=_bench)
    _bench_model(s, "cnn")
    s.add_argument("--perturbation", default="gaussian")
    s.add_argument("--levels", type=_levels, default=_levels("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"))
    s.add_argument("--draws", type=_positive, default=5)
    s.add_argument("--device", default="auto")
    s.add_argument("--variants-per-pass", type=_positive, default=8)
    s.add_argument("--threads", type=_positive, default=1)

    s = bench.add_parser("dag", help="Time Snakemake's dry run of a study config (a stand-in "
                         "ImageNet directory for config/imagenet.yaml) and count its jobs.")
    s.set_defaults(func=_bench_dag)
    s.add_argument("--configfile", default="config/imagenet.yaml")
    s.add_argument("--repeats", type=_positive, default=3)
    s.add_argument("--snakefile", default=None, help="default: the checkout's Snakefile")

    s = bench.add_parser("faults", help="Time crash-fault Monte Carlo repetitions: batched "
                         "against a per-repetition loop, in the same run.")
    s.set_defaults(func=_bench_faults)
    _bench_model(s, "mlp")
    s.add_argument("--layers", type=_names, default=None, help="default: every layer")
    s.add_argument("--p", type=float, default=0.1, help="crash probability")
    s.add_argument("--repetitions", type=_positive, default=100)
    s.add_argument("--device", default="auto")
    s.add_argument("--reps-per-pass", type=_positive, default=100)
    s.add_argument("--images", type=_positive, default=None, help="first N test images (all)")
    s.add_argument("--threads", type=_positive, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        for name in OUTPUTS:  # before any work: a long job must not fail at its end
            if isinstance(getattr(args, name, None), str):
                check_output(getattr(args, name))
        args.func(args)
    except (InputFileError, ValueError, RuntimeError) as err:
        print(f"lesion {args.step}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # an output that cannot be written, a disk that is full, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"lesion {args.step}: error: {where}{err.strerror or err}; expected a writable "
              "path (is a file in the place of a directory?)", file=sys.stderr)
        return 1
    return 0
