"""What every step's command line shares: argument types, input checks, threads, help.

Argument types refuse a bad value with what was expected; `require` refuses a
missing input file before a step pays for importing torch. Every option has a
help text saying what it is and which values it takes; the help formatter adds
"(required)" or its default (tests/test_bad_inputs.py checks every step).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from lesion.catalog import DATASET_SOURCES, MODELS, OPERATOR_LEVELS
from lesion.files import InputFileError

# Arguments that name files a step writes (checked up front by lesion.cli.main).
OUTPUTS = ("out", "train_out", "test_out", "weights_out", "curve_out", "summary_out",
           "summary_csv", "png", "pdf", "errors_out", "bounds_out", "variants_out", "csv",
           "snapshots_out", "fragility")
MIRROR_HELP = ("base URL of a mirror holding the official file names (default: the official "
               "sources); checksums are the official ones either way")


# --model of the steps that read a study's tables: any config model key, not only
# a registry architecture (the tables it reads must name it).
MODEL_NAME = "the network's name in the study (a config's model key, which the tables name)"

# Help of the options many steps share (`option` looks them up by flag).
HELP = {
    "--dataset": f"dataset name, one of: {', '.join(DATASET_SOURCES)}, or a dataset of your own "
                 "(its split files carry its shape)",
    "--split": "a split of the dataset (.safetensors, as `data user-tensors` writes it) "
               "(default: none; needed for a dataset of your own, whose class count and image "
               "shape it carries)",
    "--model": f"registry model, one of: {', '.join(MODELS)}",
    "--weights": "network weights (.safetensors, as `model train` or `data pretrained` writes "
                 "them; the file names its model)",
    "--train": "train split (.safetensors, as `data tensors` writes it)",
    "--test": "test split (.safetensors, as `data tensors` or `data imagenet-tensors` writes it)",
    "--layer": "weight layer of the model: conv1..convN then fc1..fcM, in forward order",
    "--perturbation": f"operator, one of: {', '.join(OPERATOR_LEVELS)}",
    "--seed": "the study seed (an integer): every random draw derives from it",
    "--threads": "torch CPU threads, a positive integer",
    # the files and numbers of many steps: a step's own words win (`help=`)
    "--out": "the file this step writes",
    "--png": "the figure to write, as PNG",
    "--pdf": "the figure to write, as PDF",
    "--csv": "the figure's numbers, as CSV",
    "--epochs": "training epochs, a positive integer",
    "--batch-size": "images per step or pass, a positive integer",
    "--learning-rate": "the optimiser's learning rate, a number > 0",
    "--weight-decay": "L2 weight decay, a number >= 0",
    "--device": "auto (CUDA when present), cpu, cuda or cuda:N",
    "--variants-per-pass": "variants evaluated together in one pass, a positive integer",
    "--cache-gb": "bound (GB) on the clean activations held at once, a number > 0",
}


def describe_shared(parser: argparse.ArgumentParser) -> None:
    """Give every option of `parser` without a help text its HELP entry, if it has one:
    the common flags are described once, here, for every step."""
    for action in parser._actions:
        for flag in action.option_strings:
            if action.help is None and flag in HELP:
                action.help = HELP[flag]


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(required)" to a required option's help and the default to an optional one's."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required and action.option_strings:
            return text + " (required)"
        if (action.option_strings and action.default not in (None, argparse.SUPPRESS, [])
                and "default" not in text):
            default = (",".join(map(str, action.default)) if isinstance(action.default, list)
                       else action.default)
            return f"{text} (default: {str(default).replace('%', '%%')})"
        return text


def option(parser: argparse.ArgumentParser, *flags: str, required: bool = True,
           help: str | None = None, **kwargs) -> None:
    """Add options (required unless said otherwise) whose help is HELP's unless given."""
    for flag in flags:
        parser.add_argument(flag, required=required, help=help or HELP[flag], **kwargs)


def levels(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = [math.nan]
    if not values or not all(math.isfinite(x) for x in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.5,0.9, got {text!r}")
    return values


def bits(text: str) -> list[str | int]:
    """Comma-separated bit fields (sign, exponent, mantissa, all) or bit indices."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    fields = ("all", "sign", "exponent", "mantissa")
    if not items or not all(x in fields or x.isdigit() for x in items):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated bit fields {list(fields)} or bit indices such as "
            f"30,29, got {text!r}")
    return [int(x) if x.isdigit() else x for x in items]


def names(text: str) -> list[str]:
    found = [x.strip() for x in text.split(",") if x.strip()]
    if not found:
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as fc1,fc2, got {text!r}")
    return found


def device_name(text: str) -> str:
    """auto, cpu, cuda or cuda:N, as the config allows (plus a GPU index)."""
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected one of ['auto', 'cpu', 'cuda'] or cuda:N, "
                                     f"got {text!r}")


def epochs(text: str) -> list[int]:
    """Comma-separated epoch numbers, each at least 1."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items or not all(x.isdigit() and int(x) >= 1 for x in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs >= 1 such as 1,5,10, "
                                         f"got {text!r}")
    return sorted({int(x) for x in items})


def image_size(text: str) -> list[int]:
    """height,width of an image, each at least 1."""
    items = [x.strip() for x in text.split(",")]
    if len(items) != 2 or not all(x.isdigit() and int(x) >= 1 for x in items):
        raise argparse.ArgumentTypeError(f"expected height,width such as 32,32, got {text!r}")
    return [int(x) for x in items]


def number(convert: Callable[[str], float], accept: Callable[[float], bool],
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


fraction = number(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")
gigabytes = number(float, lambda v: 0 < v < math.inf, "a positive number of GB such as 4")
positive = number(int, lambda v: v >= 1, "a positive integer")
non_negative = number(float, lambda v: 0 <= v < math.inf, "a finite number >= 0")


def require(*paths: str | None) -> None:
    """Refuse a missing input file before paying for importing torch."""
    for path in paths:
        if path is not None and not os.path.isfile(path):
            what = "a directory" if os.path.isdir(path) else "not found"
            raise InputFileError(f"{path}: {what}; expected an input file")


def steps(group: argparse.ArgumentParser) -> Callable[..., argparse.ArgumentParser]:
    """A function that adds one step to `group`: step(name, func, help, torch_threads=False).

    `func` must be the module-level function `_<name>` (dashes as
    underscores): lesion.sources finds a step's imports by that name.
    """
    sub = group.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, func: Callable, help: str, *, torch_threads: bool = False):
        assert func.__name__ == "_" + name.replace("-", "_"), (name, func.__name__)
        parser = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
        parser.set_defaults(func=func)
        # a group run without a step: argparse names what is missing by this metavar
        sub.metavar = "{" + ",".join(sub.choices) + "}"
        if torch_threads:
            option(parser, "--threads", type=positive)
        return parser
    return step


def device(parser: argparse.ArgumentParser) -> None:
    """--device and --precision (float32 arithmetic there) of a step that runs a network."""
    from lesion.catalog import PRECISIONS

    parser.add_argument("--device", type=device_name, required=True,
                        help="where the network runs: auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, required=True,
                        help=f"float32 arithmetic on a GPU, one of: {', '.join(PRECISIONS)} (ieee: "
                             "every mantissa bit; tf32: faster, 10 mantissa bits)")


def network(parser: argparse.ArgumentParser) -> None:
    """--device, --precision, --batch-size of a step that evaluates a network (the rules pass all)."""
    device(parser)
    parser.add_argument("--batch-size", type=positive, required=True,
                        help="images per forward pass, a positive integer")


def training_options(parser: argparse.ArgumentParser) -> None:
    """The train block of the config (workflow/schemas/config.schema.yaml holds the defaults)."""
    from lesion.catalog import TRAIN_SPLITS

    option(parser, "--model", help="the network's name in the study (a config's model key), "
                                   "or one of the registry architectures (then no --arch)")
    parser.add_argument("--arch", choices=list(MODELS), default=None, metavar="ARCH",
                        help="its registry architecture, one of: " + ", ".join(MODELS)
                             + " (default: --model)")
    parser.add_argument("--source", default=None,
                        help="build the network from this source instead (torchvision:<builder>, "
                             "timm:<name>, python:<module>:<callable>; default: --arch)")
    source_options(parser)
    option(parser, "--dataset", "--train", "--test")
    option(parser, "--weights-out", help="trained weights to write (.safetensors)")
    option(parser, "--curve-out", help="training curve to write (.parquet: loss and accuracy "
                                       "per epoch and split)")
    option(parser, "--epochs", type=positive, help="passes over the train split, a positive integer")
    option(parser, "--batch-size", type=positive, help="images per step, a positive integer")
    option(parser, "--learning-rate", type=float, help="Adam's learning rate, a number")
    option(parser, "--weight-decay", type=float, help="L2 weight decay, a number >= 0")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="dropout rate on every hidden layer's neurons while training, in [0, 1)")
    option(parser, "--seed", type=int, help="the training seed (initial weights, batch order), "
                                            "an integer")
    parser.add_argument("--split-seed", type=int, default=None,
                        help="the study seed that draws the halves P1, P2 (default: --seed)")
    parser.add_argument("--train-split", choices=TRAIN_SPLITS, default="all",
                        help="train on all of the training split or on its half P1 or P2, one "
                             "of: " + ", ".join(TRAIN_SPLITS))
    device(parser)
    parser.add_argument("--init", default=None,
                        help="fine-tune: start from this weights file of the same architecture "
                             "(default: a fresh, seeded network)")
    parser.add_argument("--freeze", type=names, default=[],
                        help="comma-separated layers left as they are, e.g. conv1,conv2 "
                             "(default: none)")
    parser.add_argument("--masks", default=None,
                        help="safetensors of bool tensors by parameter name: only True entries "
                             "train (default: every entry)")
    parser.add_argument("--checkpoint-epochs", type=epochs, default=[],
                        help="save the weights after these epochs, e.g. 1,5,10 (default: none)")
    parser.add_argument("--checkpoints-dir", default=None,
                        help="where checkpoints go, as epoch{N}.safetensors (default: none; "
                             "needed with --checkpoint-epochs)")


def source_options(parser: argparse.ArgumentParser) -> None:
    """--path, --kwargs and --normalize of a --source (lesion.network_source.Source)."""
    parser.add_argument("--path", default=None, help="directory of a python: source's module "
                                                    "(default: the working directory)")
    parser.add_argument("--kwargs", default=None, help="the source's keyword arguments as JSON "
                                                      "(default: none)")
    parser.add_argument("--normalize", default=None,
                        help='the input normalisation run inside the network, as JSON: '
                             '{"mean": [...], "std": [...]} or "source" (default: none)')


def parsed_source(args: argparse.Namespace):
    """The Source of --source and source_options (torch-free)."""
    import json

    from lesion.network_source import Source

    return Source.parse(args.source, path=args.path,
                        kwargs=json.loads(args.kwargs) if args.kwargs else None,
                        normalize=json.loads(args.normalize) if args.normalize else None)


def check_model_fits(model: str, dataset: str) -> None:
    """Refuse a model that the dataset cannot feed (lesion.catalog)."""
    from lesion.catalog import dataset_models

    if model not in dataset_models(dataset):
        raise ValueError(f"dataset {dataset!r} cannot feed architecture {model!r}; expected "
                         f"one of {list(dataset_models(dataset))}")
