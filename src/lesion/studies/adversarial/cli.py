"""`python -m lesion adversarial STEP ...`: the adversarial study's steps (Szegedy et al. 2013)."""

from __future__ import annotations

import argparse
import json

from lesion.catalog import ATTACKS
from lesion.cli.args import (
    levels,
    names,
    network,
    non_negative,
    positive,
    require,
    steps,
    training_options,
)
from lesion.cli.figure_args import figure_options


def options(text: str) -> dict:
    """A JSON object, e.g. '{"fgsm": {"eps": 0.1}}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"eps\": 0.1}}', "
                                         f"got {text!r}")
    return value


def _attack(args):
    require(args.weights, args.test)
    if len(args.attacks) != len(args.outs):
        raise ValueError(f"got {len(args.attacks)} attacks in --attacks but {len(args.outs)} "
                         "--outs; expected one output per attack, in the same order")
    from lesion.evaluate import set_threads
    from lesion.studies.adversarial import sets
    set_threads(args.threads)
    sets.write_sets(args.dataset, args.weights, args.test,
                    {name: (options, out) for (name, options), out in
                     zip(args.attacks.items(), args.outs, strict=True)},
                    images=args.images, seed=args.seed, device=args.device,
                    precision=args.precision)


def _train(args):
    from lesion.cli.training import training_setup

    setup = training_setup(args)
    from lesion import data, train
    from lesion.studies.adversarial.training import mix_adversarial
    if args.adversarial_attack != "none":  # the examples of the network as it trains
        num_classes = data.get(args.dataset, split=args.train).num_classes
        setup["hooks"].append(train.Hook(
            batch=mix_adversarial(args.adversarial_attack, args.adversarial_eps, seed=args.seed,
                                  num_classes=num_classes),
            metadata={"adversarial": args.adversarial_attack,
                      "adversarial_eps": args.adversarial_eps}))
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    train.train(dataset=args.dataset, train_path=args.train, test_path=args.test,
                weights_out=args.weights_out, curve_out=args.curve_out, **setup)


def _distortion(args):
    require(*[c for c in args.curves if c != "none"], *args.weights, *args.sets)
    from lesion import files
    from lesion.studies.adversarial import kinds, tables
    files.write_table(tables.distortion_table(args.curves, args.weights, args.sets), args.out,
                      kind=kinds.DISTORTION)


def _transfer(args):
    require(args.test, *args.weights, *args.sets)
    from lesion import files
    from lesion.evaluate import set_threads
    from lesion.studies.adversarial import kinds, tables
    set_threads(args.threads)
    study = tables.Study(args.dataset, args.test, args.weights, args.device, args.precision)
    files.write_table(tables.transfer_table(study, args.sets, args.sigmas, args.seed), args.out,
                      kind=kinds.TRANSFER)


def _cross_training(args):
    require(args.test, *args.weights, *args.sets)
    from lesion import files
    from lesion.evaluate import set_threads
    from lesion.studies.adversarial import kinds, tables
    set_threads(args.threads)
    study = tables.Study(args.dataset, args.test, args.weights, args.device, args.precision)
    files.write_table(tables.cross_training_table(study, args.sets, args.sigma, args.seed), args.out,
                      kind=kinds.CROSS_TRAINING)


def _training_table(args):
    require(*args.weights, *args.curves)
    from lesion import files
    from lesion.studies.adversarial import kinds, tables
    files.write_table(tables.training_table(args.labels, args.weights, args.curves), args.out,
                      kind=kinds.ADVERSARIAL_TRAINING)


def _units(args):
    require(args.weights, args.test)
    from lesion.evaluate import set_threads
    from lesion.studies.adversarial import units
    set_threads(args.threads)
    units.write_units(args.dataset, args.weights, args.test, args.out, layer=args.layer,
                      unit=args.unit, top=args.top, seed=args.seed)


def _figure(args):
    from lesion.studies.adversarial import plots
    if args.name == "examples":
        sets = dict(args.sets or [])
        if not sets or not args.out_dir:
            raise ValueError("figure examples: expected --sets MODEL=SET ... and --out-dir")
        require(*sets.values(), args.test)
        plots.examples(sets, args.test, args.out_dir, svg=args.svg)
        return
    if not args.png or not args.pdf:
        raise ValueError(f"figure {args.name}: expected --png and --pdf")
    if args.name == "units":
        require(args.units)
        plots.units(args.units, args.png, args.pdf, svg=args.svg)
    else:
        require(args.transfer)
        plots.transfer(args.transfer, args.png, args.pdf, svg=args.svg)


def _csv(args):
    require(args.table)
    from lesion.studies.adversarial import plots
    plots.csv(args.table, args.out)


def model_set(text: str) -> tuple[str, str]:
    """MODEL=SET, e.g. FC10-1=results/digits/adversarial/lbfgs/FC10-1.safetensors."""
    model, sep, path = text.partition("=")
    if not sep or not model or not path:
        raise argparse.ArgumentTypeError(f"expected MODEL=SET, got {text!r}")
    return model, path


def register(groups) -> None:
    step = steps(groups.add_parser(
        "adversarial", help="Adversarial examples, transfer, adversarial training, unit "
        "inspection (Szegedy et al. 2013)."))

    s = step("attack", _attack, "Attack the first N test images of a network; write the "
             "adversarial set.", torch_threads=True)
    for name, text in (("--dataset", None), ("--weights", "the network attacked"),
                       ("--test", None)):
        s.add_argument(name, required=True, help=text)
    s.add_argument("--attacks", type=options, required=True,
                   help=f"the attacks (some of: {', '.join(ATTACKS)}) and their options as JSON, "
                        "e.g. '{\"fgsm\": {\"eps\": 0.1}, \"lbfgs\": {}}'")
    s.add_argument("--outs", nargs="+", required=True,
                   help="the adversarial sets to write, one per attack, same order")
    s.add_argument("--images", type=positive, default=None, help="the first N test images (default: all)")
    s.add_argument("--seed", type=int, required=True, help="the study seed (targets, random starts)")
    network(s)

    s = step("train", _train, "Train a network, optionally with adversarial examples of "
             "itself mixed into every batch.", torch_threads=True)
    training_options(s)
    s.add_argument("--adversarial-attack", choices=("none", *ATTACKS), default="none",
                   help=f"attack whose examples are mixed in, one of: none, {', '.join(ATTACKS)}")
    s.add_argument("--adversarial-eps", type=non_negative, default=0.1,
                   help="its eps for fgsm and pgd (default: %(default)s)")

    s = step("distortion", _distortion, "Table 1: errors and mean minimum distortion per model.")
    s.add_argument("--curves", nargs="+", required=True,
                   help="training curves, one per model; none for a network imported with its "
                        "weights (its errors are left empty)")
    s.add_argument("--weights", nargs="+", required=True, help="weights, same order")
    s.add_argument("--sets", nargs="+", required=True, help="L-BFGS sets, same order")
    s.add_argument("--out", required=True)

    for name, func, text in (
            ("transfer", _transfer, "Table 2: every set fed to every model, with Gaussian and "
             "amplified controls."),
            ("cross-training", _cross_training, "Table 4: sets of models trained on the halves "
             "P1, P2 fed to each other.")):
        s = step(name, func, text, torch_threads=True)
        for arg, help_text in (("--dataset", None), ("--test", None),
                               ("--out", "table to write")):
            s.add_argument(arg, required=True, help=help_text)
        s.add_argument("--weights", nargs="+", required=True, help="the models evaluated")
        s.add_argument("--sets", nargs="+", required=True, help="adversarial sets fed to them")
        if name == "transfer":
            s.add_argument("--sigmas", type=levels, required=True,
                           help="Gaussian noise and amplification sizes (per-pixel RMS), e.g. 0.1,0.3")
        else:
            s.add_argument("--sigma", type=non_negative, required=True,
                           help="the size of the Gaussian noise and of the amplified examples "
                                "(per-pixel RMS)")
        s.add_argument("--seed", type=int, required=True, help="the study seed (noise)")
        network(s)

    s = step("training-table", _training_table, "§4.1: test error of each training regime.")
    s.add_argument("--labels", type=names, required=True, help="the regime of each network, in order, e.g. "
                   "base,base,dropout,dropout (a regime's networks are its replicates 0, 1, ...)")
    s.add_argument("--weights", nargs="+", required=True, help="weights, one per regime")
    s.add_argument("--curves", nargs="+", required=True, help="training curves, same order")
    s.add_argument("--out", required=True)

    s = step("units", _units, "§3: the test images that most activate one unit and a random "
             "direction of a layer.", torch_threads=True)
    for name, text in (("--dataset", None), ("--weights", "the network inspected (.safetensors)"),
                       ("--test", None), ("--out", "file to write"),
                       ("--layer", "a hidden layer, e.g. fc1")):
        s.add_argument(name, required=True, help=text)
    s.add_argument("--unit", type=int, required=True, help="the unit's index in the layer")
    s.add_argument("--top", type=positive, required=True, help="images per direction")
    s.add_argument("--seed", type=int, required=True, help="seeds the random direction")

    s = step("figure", _figure, "Draw a figure of the adversarial study.")
    s.add_argument("name", choices=("examples", "units", "transfer"),
                   help="the figure, one of: examples, units, transfer")
    s.add_argument("--sets", type=model_set, nargs="+", default=None,
                   help="examples: each model's L-BFGS set as MODEL=SET (default: none)")
    s.add_argument("--out-dir", default=None,
                   help="examples: where {model}.png and .pdf go (default: none)")
    s.add_argument("--test", default=None, help="examples: the test split (default: none)")
    s.add_argument("--units", default=None, help="units: the units file (default: none)")
    s.add_argument("--transfer", default=None, help="transfer: the transfer table (default: none)")
    s.add_argument("--png", default=None, help="units, transfer: the PNG to write (default: none)")
    s.add_argument("--pdf", default=None, help="units, transfer: the PDF to write (default: none)")
    figure_options(s)

    s = step("csv", _csv, "A table of the study as CSV, for the report.")
    s.add_argument("--table", required=True, help="a table of the study (.parquet)")
    s.add_argument("--out", required=True)
