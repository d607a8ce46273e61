"""The engine's steps: `python -m lesion data|model|sweep STEP ...`.

data: raw data and tensor caches; model: trained or pretrained networks;
sweep: variants, their predictions, the metrics table. Studies reuse these
steps through their rules. Each step imports its implementation lazily, so
`--help` is instant and torch-free steps never import torch.
"""

from __future__ import annotations

import argparse

from lesion.catalog import DATASET_SOURCES, PRETRAINED_WEIGHTS, USER_SOURCES
from lesion.cli.args import (
    MIRROR_HELP,
    MODEL_NAME,
    bits,
    fraction,
    gigabytes,
    image_size,
    levels,
    names,
    network,
    non_negative,
    option,
    parsed_source,
    positive,
    require,
    source_options,
    steps,
    training_options,
)


def _export(args):
    from lesion import data
    data.export(args.dataset, args.out)


def _download(args):
    from lesion import fetch
    fetch.download_dataset(args.dataset, args.out, mirror=args.mirror)


def _tensors(args):
    from lesion.catalog import DATASET_SOURCES

    if DATASET_SOURCES.get(args.dataset) != "download":  # a download is a directory
        require(args.raw)
    from lesion import data
    data.make_tensors(args.dataset, args.raw, args.train_out, args.test_out,
                      test_fraction=args.test_fraction, seed=args.seed)


def _user_tensors(args):
    from lesion import usersplits
    usersplits.write(args.dataset, args.source, args.path, args.train_out, args.test_out,
                     test_fraction=args.test_fraction, seed=args.seed, size=args.size,
                     channels=args.channels, workers=args.workers)


def _imagenet_tensors(args):
    from lesion import imagenet
    imagenet.decode(args.path, args.test_out, weights=args.weights.split(","), workers=args.workers)


def _download_weights(args):
    from lesion import fetch
    fetch.download_weights(args.weights, args.out, mirror=args.mirror)


def _pretrained(args):
    require(args.pth)
    from lesion import fetch
    fetch.import_weights(args.model, args.pth, args.out)


def _train(args):
    from lesion.cli.training import training_setup

    setup = training_setup(args)
    from lesion import train
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    train.train(dataset=args.dataset, train_path=args.train, test_path=args.test,
                weights_out=args.weights_out, curve_out=args.curve_out, **setup)


def _import(args):
    require(args.weights)
    source = parsed_source(args)
    from lesion import networks
    networks.import_network(args.model, args.dataset, source, args.weights, args.out,
                            state_dict_key=args.state_dict_key, strip_prefix=args.strip_prefix,
                            split=args.split)


def _layers(args):
    require(args.weights)
    import pyarrow as pa

    from lesion import data, files, kinds, models, networks
    spec = data.get(args.dataset, split=args.split)
    model = models.load_weights(args.weights, num_classes=spec.num_classes,
                                input_shape=spec.input_shape)
    frame = networks.layer_frame(model)
    files.write_table(pa.Table.from_pandas(frame, preserve_index=False), args.out,
                      {"model": model.lesion_name}, kind=kinds.LAYERS)


def _autoencoder(args):
    require(args.train)
    from lesion import pretrain
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    pretrain.pretrain(args.arch, args.dataset, args.train, args.out, name=args.model,
                         epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, seed=args.seed, sparsity=args.sparsity,
                         sparsity_target=args.sparsity_target)


def _variants(args):
    from lesion.catalog import check_sweep

    check_sweep(args.perturbation, args.levels)
    require(args.weights)
    from lesion import sweeps
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    options = {"bits": args.bits} if args.bits is not None else {}
    sweeps.write_variants(args.dataset, args.weights, args.layers, args.perturbation,
                         levels=args.levels, draws=args.draws, study_seed=args.seed,
                         out=args.out, options=options, split=args.split)


def _run(args):
    if len(args.other_tests) != len(args.other_outs):
        raise ValueError(f"got {len(args.other_tests)} --other-tests but {len(args.other_outs)} "
                         "--other-outs; expected one output per other test set, in the same order")
    from lesion.catalog import check_sweep

    check_sweep(args.perturbation, args.levels)
    require(args.weights, args.test, *args.other_tests)
    from lesion import predict
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    predict.run_sweep(args.dataset, args.weights, [args.test, *args.other_tests],
                      [args.out, *args.other_outs], args.variants_out, layers=args.layers,
                      perturbation=args.perturbation, levels=args.levels, draws=args.draws,
                      study_seed=args.seed,
                      options={"bits": args.bits} if args.bits is not None else {},
                      device=args.device, batch_size=args.batch_size,
                      variants_per_pass=args.variants_per_pass, cache_gb=args.cache_gb,
                      precision=args.precision)


def _variant_weights(args):
    require(args.weights, args.variants)
    from lesion import sweeps
    sweeps.write_variant_weights(args.dataset, args.weights, args.variants, args.out,
                                split=args.split, layer=args.layer)


def _predict(args):
    require(args.weights, args.test, args.variants)
    from lesion import predict
    from lesion.evaluate import set_threads
    set_threads(args.threads)
    if args.variants is None:
        predict.predict_clean(args.dataset, args.weights, args.test, args.out,
                              device=args.device, batch_size=args.batch_size,
                              precision=args.precision)
    else:
        if args.variants_per_pass is None or args.cache_gb is None:
            raise ValueError("--variants needs --variants-per-pass and --cache-gb (the config's "
                             "evaluate.variants_per_pass and evaluate.cache_gb)")
        predict.predict_sweep(args.dataset, args.weights, args.test, args.variants, args.out,
                              device=args.device, batch_size=args.batch_size,
                              variants_per_pass=args.variants_per_pass,
                              cache_gb=args.cache_gb, precision=args.precision)


def _metrics(args):
    require(*args.clean, *args.variants, *args.predictions)
    from lesion import metrics
    metrics.write_metrics(args.dataset, args.model, clean=args.clean, variants=args.variants,
                          predictions=args.predictions, out=args.out,
                          summary_out=args.summary_out, summary_csv=args.summary_csv,
                          testsets=args.testsets)


def sweep_options(parser: argparse.ArgumentParser, *,
                  out: str = "variants table to write (.parquet)") -> None:
    """What defines a sweep: the network, its layers, the operator, its levels and draws."""
    option(parser, "--dataset", "--weights")
    option(parser, "--layers", type=names,
           help="weight layers to sweep, comma-separated (e.g. conv2,fc1), or all: every weight "
                "layer (a network of one's own: every one its graph lists); swept one after "
                "another in forward order, their variants in one table")
    option(parser, "--perturbation")
    option(parser, "--out", help=out)
    option(parser, "--levels", type=levels,
           help="comma-separated levels of the operator, e.g. 0.1,0.5,0.9: fractions for the "
                "knockouts, redraw and crash, std(W) units for gaussian, per-bit rates for bit "
                "faults")
    option(parser, "--draws", type=positive, help="variants per level, a positive integer")
    option(parser, "--seed", type=int)
    parser.add_argument("--bits", type=bits, default=None,
                        help="bit faults only: bit positions to hit, comma-separated fields (sign, "
                             "exponent, mantissa, all) or indices, e.g. sign,exponent or 30,29 "
                             "(default: all bits)")


def evaluation_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The evaluate block of the config (the schema holds the defaults)."""
    network(parser)
    when = "" if required else " (default: none; needed with --variants)"
    parser.add_argument("--variants-per-pass", type=positive, default=None, required=required,
                        help="variants evaluated per vmap-ed pass, a positive integer" + when)
    parser.add_argument("--cache-gb", type=gigabytes, default=None, required=required,
                        help="bound on the clean prefix activations held at once, in GB, a "
                             "positive number" + when)


def register(groups) -> None:
    step = steps(groups.add_parser("data", help="Raw data, tensor caches, pretrained weights."))
    s = step("export", _export, "Write a dataset's raw data as it ships.")
    option(s, "--dataset", help="dataset shipped in a package, one of: " + ", ".join(
        d for d, source in DATASET_SOURCES.items() if source == "export"))
    option(s, "--out", help="raw data to write (.safetensors)")

    s = step("download", _download, "Download a dataset through torchvision, "
             "md5-checked, into a directory that appears only when complete.")
    option(s, "--dataset", help="dataset to download, one of: " + ", ".join(
        d for d, source in DATASET_SOURCES.items() if source == "download"))
    option(s, "--out", metavar="DIR", help="directory to create")
    s.add_argument("--mirror", default=None, help=MIRROR_HELP)

    s = step("tensors", _tensors, "Preprocess and split raw data into train/test tensors.")
    option(s, "--dataset")
    option(s, "--raw", help="raw data: the file `data export` writes or the directory `data "
                            "download` writes")
    option(s, "--train-out", help="train split to write (.safetensors)")
    option(s, "--test-out", help="test split to write (.safetensors)")
    option(s, "--test-fraction", type=fraction,
           help="share of the images in the test split, between 0 and 1 (exclusive; ignored "
                "for datasets with an official split)")
    option(s, "--seed", type=int)

    s = step("user-tensors", _user_tensors, "Decode a dataset of your own once into train/test "
             "tensors: an ImageFolder directory (resized, centre-cropped, stored as uint8) or a "
             "safetensors file.")
    option(s, "--dataset", help="its name in paths and the split files' metadata: a plain "
                                "name but not one of: " + ", ".join(DATASET_SOURCES))
    option(s, "--source", choices=USER_SOURCES, help="where the images are, one of: "
                                                     + ", ".join(USER_SOURCES))
    option(s, "--path", help="the ImageFolder directory (<path>/[train|test/]<class>/<image>) "
                             "or the .safetensors file")
    option(s, "--train-out", help="train split to write (.safetensors)")
    option(s, "--test-out", help="test split to write (.safetensors)")
    option(s, "--test-fraction", type=fraction,
           help="share of the images in the test split when the data has no train split, "
                "between 0 and 1 (exclusive)")
    option(s, "--seed", type=int)
    s.add_argument("--size", type=image_size, default=None,
                   help="folder only: height,width of every image after resizing and cropping, "
                        "e.g. 32,32 (default: none; required for a folder)")
    s.add_argument("--channels", type=int, choices=(1, 3), default=3,
                   help="folder only: 1 (grey) or 3 (RGB), one of: 1, 3")
    s.add_argument("--workers", type=positive, default=1,
                   help="decoding processes, a positive integer")

    s = step("imagenet-tensors", _imagenet_tensors, "Decode the ILSVRC2012 validation images "
             "once (the weights' transforms, stored as uint8).")
    option(s, "--path", help="ImageFolder directory of the validation images: <path>/<wnid>/*.JPEG")
    option(s, "--test-out", help="test split to write (.safetensors)")
    option(s, "--weights", help="torchvision weights whose transforms to use, comma-separated, e.g. "
                                "ResNet18_Weights.IMAGENET1K_V1 (all must share one)")
    s.add_argument("--workers", type=positive, default=1,
                   help="decoding processes, a positive integer")

    s = step("download-weights", _download_weights, "Download pretrained torchvision weights, "
             "sha256-prefix checked.")
    option(s, "--weights", help="full torchvision enum name, one of: "
                                f"{', '.join(PRETRAINED_WEIGHTS.values())}")
    option(s, "--out", help=".pth file to write")
    s.add_argument("--mirror", default=None, help=MIRROR_HELP)

    s = step("pretrained", _pretrained, "Store downloaded pretrained weights as safetensors "
             "(loaded with weights_only=True).")
    option(s, "--model", help=f"model with pretrained weights, one of: "
                              f"{', '.join(PRETRAINED_WEIGHTS)}")
    option(s, "--pth", help="the downloaded .pth state dict (as `data download-weights` writes it)")
    option(s, "--out", help="weights to write (.safetensors)")

    step = steps(groups.add_parser("model", help="Train a network."))
    training_options(step("train", _train, "Train a network (a config model or a registry "
                          "architecture), seeded.", torch_threads=True))

    s = step("import", _import, "Import a network the user brings with its weights (any "
             "source: torchvision, timm, a Python factory); write it as lesion's weights, "
             "with its source and the file's sha256. Nothing is trained.")
    for name, text in (("--model", "the network's name in the study"), ("--dataset", None),
                       ("--source", "lesion:<arch>, torchvision:<builder>, timm:<name> or "
                                    "python:<module>:<callable>"),
                       ("--weights", "the weights file (.safetensors, or a state dict: .pt, "
                                     ".pth, .ckpt, loaded with weights_only=True)"),
                       ("--out", "the network to write (.safetensors)")):
        s.add_argument(name, required=True, help=text)
    source_options(s)
    s.add_argument("--state-dict-key", default=None, help="the state dict inside a checkpoint, "
                                                         "e.g. state_dict (default: the file is one)")
    s.add_argument("--strip-prefix", default=None, help="a prefix to remove from every key, "
                                                       "e.g. module. (default: none)")
    option(s, "--split", required=False)

    s = step("layers", _layers, "List a network's weight layers in forward order (name, type, "
             "parameters, output units, the norm that follows): the sweeps of `layers: all`.")
    option(s, "--dataset", "--weights")
    option(s, "--out", help="layer table to write (.parquet)")
    option(s, "--split", required=False)

    s = step("autoencoder", _autoencoder, "Pretrain a network's fc1 as an autoencoder's "
             "encoder (AE400-10); write the network for fine-tuning.", torch_threads=True)
    for name, text in (("--model", "the network's name in the study, or one of the "
                                   "registry architectures (then --arch is the same)"),
                       ("--arch", "its registry architecture, e.g. ae400_10"),
                       ("--dataset", None), ("--train", None),
                       ("--out", "the network to write (.safetensors)")):
        s.add_argument(name, required=True, help=text)
    s.add_argument("--epochs", type=positive, required=True)
    s.add_argument("--batch-size", type=positive, required=True)
    s.add_argument("--learning-rate", type=float, required=True)
    s.add_argument("--sparsity", type=non_negative, default=0.0,
                   help="weight beta of the KL sparsity penalty on the code (default: %(default)s)")
    s.add_argument("--sparsity-target", type=fraction, default=0.05,
                   help="mean activation rho the penalty pulls each code unit to "
                        "(default: %(default)s)")
    s.add_argument("--seed", type=int, required=True)

    step = steps(groups.add_parser("sweep", help="Variants of layers, their predictions, metrics."))
    s = step("variants", _variants, "Draw every variant of one operator on some layers; write "
             "their table.", torch_threads=True)
    sweep_options(s)
    option(s, "--split", required=False)

    s = step("run", _run, "Draw every variant of one operator on some layers and predict the "
             "test split with each, layer after layer in one process: each variant is drawn "
             "once for its table row and its predictions on every test set.",
             torch_threads=True)
    sweep_options(s, out="predictions table to write (.parquet)")
    option(s, "--test")
    option(s, "--variants-out", help="variants table to write (.parquet)")
    s.add_argument("--other-tests", nargs="*", default=[],
                   help="more test sets to predict with every variant, e.g. a model's "
                        "adversarial sets (default: none)")
    s.add_argument("--other-outs", nargs="*", default=[],
                   help="their predictions tables, same order (default: none)")
    evaluation_options(s)

    s = step("variant-weights", _variant_weights, "Write every variant of a variants table (or "
             "of one of its layers) as safetensors, each checked against its recorded sha256.")
    option(s, "--dataset", "--weights")
    option(s, "--variants", help="variants table (as `sweep variants` or `sweep run` writes it)")
    s.add_argument("--layer", default=None,
                   help="write the variants of this layer only, e.g. fc1 (default: every layer "
                        "of the table)")
    option(s, "--out", metavar="DIR", help="directory to create (an earlier one is replaced)")
    option(s, "--split", required=False)

    s = step("predict", _predict, "Predict the test split with the clean model or every "
             "variant of a variants table, layer after layer.", torch_threads=True)
    option(s, "--dataset", "--weights", "--test")
    option(s, "--out", help="predictions table to write (.parquet)")
    s.add_argument("--variants", help="variants table of one operator, one or more layers (as "
                                      "`sweep variants` writes it) (default: none, the "
                                      "unperturbed model)")
    evaluation_options(s, required=False)

    s = step("metrics", _metrics, "Metrics of every variant of a model, and their summary; "
             "each predictions table is matched to its variants table by their variant ids.")
    option(s, "--dataset")
    option(s, "--model", help=MODEL_NAME)
    s.add_argument("--testsets", type=names, default=["clean"],
                   help="the test sets, comma-separated, e.g. clean,fgsm (default: clean)")
    s.add_argument("--clean", nargs="+", required=True,
                   help="predictions of the unperturbed model (predictions/none.parquet), one "
                        "per test set")
    option(s, "--out", help="metrics table to write (.parquet, one row per variant and metric)")
    option(s, "--summary-out", help="summary over draws to write (.parquet)")
    option(s, "--summary-csv", help="the same summary as CSV")
    s.add_argument("--variants", nargs="+", default=[],
                   help="variants tables, one per sweep step (an operator, one or more layers) "
                        "(default: none)")
    s.add_argument("--predictions", nargs="+", default=[],
                   help="predictions tables, one per variants table and test set, test set "
                        "after test set, in any order within a test set (default: none)")
