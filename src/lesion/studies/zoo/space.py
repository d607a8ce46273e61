"""The zoo's hyper-parameter space and its architectures, torch-free.

Snakemake checks a zoo config with this module while it builds the DAG
(`check`), so it must not import torch. The properties, their choices and
the architecture follow Eilertsen et al.'s classifier.py and model.py:

- the conv layers form 3 blocks of widths conv_width * (1, 2, 4); conv_depth
  layers are spread over the blocks (3: 1+1+1, 4: 1+1+2, 5: 1+2+2) and each
  block ends with 2x2 max pooling (ceil mode, TensorFlow's SAME) while the
  maps are larger than 4x4: the original's 32x32 inputs end at 4x4 after
  three, MNIST's 28x28 too, digits' 8x8 after one (three would leave 1x1);
- fc_depth hidden layers of widths fc_width * 2**-i, then the output layer;
- every conv is filter_size x filter_size, stride 1, zero-padded to keep its
  size; every hidden layer is followed by the net's activation.

Left out of the original: batch normalisation and dropout (every net is a
pure function of its flat weights), early stopping (every net trains
`epochs` epochs), class balancing of the training set.

The flattening order of a net's weights (snapshots, meta-classifiers) is
`layout`: layer by layer in forward order, each layer's weight then its
bias, each tensor row-major in PyTorch's layout (conv: out, in, kh, kw;
linear: out, in). It is the order of `nn.Module.parameters()` of the same
net, and the order in which the original's `print_all_vars` wrote its
TensorFlow variables (W[:, :, j, i] for each output i and input j).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

# Property -> what its value is. Categorical properties are sampled uniformly
# from the config's choices; the learning rate from a range.
PROPERTIES = ("dataset", "batch_size", "augmentation", "optimizer", "activation",
              "initialization", "filter_size", "conv_depth", "fc_depth", "conv_width", "fc_width")
ARCHITECTURE = ("filter_size", "conv_depth", "fc_depth", "conv_width", "fc_width")
# Derived versions of the config's dataset (nets.derive). The default choices change the
# input statistics (mean, contrast, noise, smoothness); transposed and permuted keep every
# pixel's statistics (a symmetry the architecture can absorb) and are kept as options.
DATASETS = ("plain", "inverted", "transposed", "permuted", "low_contrast", "noisy", "blurred")
OPTIMIZERS = ("adam", "rmsprop", "momentum")
ACTIVATIONS = ("relu", "elu", "sigmoid", "tanh")
INITIALIZATIONS = ("constant", "normal", "glorot_uniform", "glorot_normal")
NAMED = {"dataset": DATASETS, "optimizer": OPTIMIZERS, "activation": ACTIVATIONS,
         "initialization": INITIALIZATIONS}
BLOCKS = 3
# Datasets a zoo can train on: (input shape, classes), as lesion.data has them
# (tests/test_zoo.py checks that they agree); ImageNet is too large for a zoo.
INPUTS = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}
POOLED = 4  # no pooling once a map is this small: 32x32 pools to 4x4 as the original, 8x8 once


class ZooConfigError(ValueError):
    """A zoo setting that cannot work; the message names the key and the value."""


def net_seed(study_seed: int, *key: object) -> int:
    """A 63-bit seed hashed from the study seed and a key (net id, purpose)."""
    text = "|".join(map(str, ("zoo", study_seed, *key)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def block_depths(conv_depth: int) -> list[int]:
    """Conv layers per block, as the original spreads them (extra layers go to the later blocks)."""
    depths = [conv_depth // BLOCKS] * BLOCKS
    for block in range(BLOCKS - 1, 0, -1):
        if sum(depths) < conv_depth:
            depths[block] += 1
    if min(depths) < 1 or sum(depths) != conv_depth:
        raise ZooConfigError(f"conv_depth = {conv_depth} cannot fill {BLOCKS} blocks; expected "
                             f"{BLOCKS} to {3 * BLOCKS - 1} conv layers")
    return depths


def layers(arch: Mapping, input_shape: Sequence[int], classes: int) -> list[dict]:
    """The net's layers in forward order: name, kind, in/out size, filter, pool after it."""
    channels, height, width = input_shape
    out = []
    i = 0
    for block, depth in enumerate(block_depths(int(arch["conv_depth"]))):
        for j in range(depth):
            i += 1
            c_out = int(arch["conv_width"]) * 2 ** block
            pool = j == depth - 1 and min(height, width) > POOLED
            out.append({"name": f"conv{i}", "kind": "conv", "in": channels, "out": c_out,
                        "k": int(arch["filter_size"]), "pool": pool})
            channels = c_out
        if pool:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
    features = channels * height * width
    for j in range(int(arch["fc_depth"])):
        size = int(int(arch["fc_width"]) * 2.0 ** -j)
        out.append({"name": f"fc{j + 1}", "kind": "fc", "in": features, "out": size})
        features = size
    out.append({"name": "out", "kind": "fc", "in": features, "out": classes})
    return out


def layout(arch: Mapping, input_shape: Sequence[int], classes: int) -> list[tuple[str, tuple]]:
    """(tensor name, shape) in flattening order: each layer's weight, then its bias."""
    shapes = []
    for layer in layers(arch, input_shape, classes):
        if layer["kind"] == "conv":
            weight = (layer["out"], layer["in"], layer["k"], layer["k"])
        else:
            weight = (layer["out"], layer["in"])
        shapes += [(f"{layer['name']}.weight", weight), (f"{layer['name']}.bias", (layer["out"],))]
    return shapes


def spans(arch: Mapping, input_shape: Sequence[int], classes: int) -> list[tuple[str, int, int]]:
    """(tensor name, start, stop) of each tensor in the flat vector, in layout order."""
    out, start = [], 0
    for name, shape in layout(arch, input_shape, classes):
        out.append((name, start, start + math.prod(shape)))
        start += math.prod(shape)
    return out


def size(arch: Mapping, input_shape: Sequence[int], classes: int) -> int:
    """Number of weights (biases included) of a net: the length of its flat vector."""
    return sum(math.prod(shape) for _, shape in layout(arch, input_shape, classes))


def smallest(choices: Mapping[str, Sequence], input_shape: Sequence[int], classes: int) -> int:
    """Weights of the smallest net the choices allow (every size grows with each architecture value)."""
    return size({key: min(choices[key]) for key in ARCHITECTURE}, input_shape, classes)


def group_key(row: Mapping) -> tuple:
    """Nets with equal keys train together (same shapes, same batches per epoch)."""
    return (*(int(row[key]) for key in ARCHITECTURE), int(row["batch_size"]))


def classified(choices: Mapping[str, Sequence], properties: str | Sequence[str]) -> list[str]:
    """The properties meta-classifiers predict: `all` is every property with two or more choices."""
    if properties == "all":
        return [p for p in PROPERTIES if len(choices[p]) >= 2]
    return list(properties)


def check_dataset(dataset: str) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes) of a dataset a zoo can train on."""
    if dataset not in INPUTS:
        raise ZooConfigError(f"zoo: dataset.name = {dataset!r} cannot train a zoo; expected one "
                             f"of {list(INPUTS)}")
    return INPUTS[dataset]


# The keys of the zoo section that make its nets: all a shard is given, so that
# editing the meta-classifiers or the merge (meta, min_accuracy, test_fraction)
# retrains no shard.
NET_KEYS = ("nets", "epochs", "snapshots", "learning_rate", "choices")


def check(zoo: Mapping, input_shape: Sequence[int], classes: int) -> None:
    """Refuse a zoo config that cannot work, naming the key, the value and what was expected."""
    if zoo["shards"] > zoo["nets"]:
        raise ZooConfigError(f"zoo.shards = {zoo['shards']} is more than zoo.nets = {zoo['nets']}; "
                             "expected at most one shard per net")
    check_nets(zoo)
    _check_meta(zoo, input_shape, classes)


def check_nets(zoo: Mapping) -> None:
    """Refuse net-making settings (NET_KEYS) that cannot work."""
    choices = zoo["choices"]
    for name, allowed in NAMED.items():
        unknown = [v for v in choices[name] if v not in allowed]
        if unknown:
            raise ZooConfigError(f"zoo.choices.{name}: {unknown[0]!r} is not known; expected "
                                 f"some of {list(allowed)}")
    for depth in choices["conv_depth"]:
        try:
            block_depths(depth)
        except ZooConfigError as err:
            raise ZooConfigError(f"zoo.choices.conv_depth: {err}") from None
    rate = zoo["learning_rate"]
    if not rate["min"] <= rate["max"]:
        raise ZooConfigError(f"zoo.learning_rate = {dict(rate)!r}: min is above max; expected "
                             "min <= max")


def _check_meta(zoo: Mapping, input_shape: Sequence[int], classes: int) -> None:
    """Refuse meta-classifier settings that the zoo's nets cannot serve."""
    choices = zoo["choices"]
    meta = zoo["meta"]
    props = classified(choices, meta["properties"])
    if not props:
        raise ZooConfigError("zoo.meta.properties = 'all' finds no property with two or more "
                             "choices; expected some property to vary")
    for prop in props:
        if prop not in PROPERTIES:
            raise ZooConfigError(f"zoo.meta.properties: {prop!r} is not a property; expected "
                                 f"some of {list(PROPERTIES)}")
        if len(choices[prop]) < 2:
            raise ZooConfigError(f"zoo.meta.properties: {prop!r} has one choice "
                                 f"({list(choices[prop])}); expected a property with two or more")
        if zoo["nets"] < 2 * len(choices[prop]):
            raise ZooConfigError(f"zoo.nets = {zoo['nets']} is too few for {prop!r} "
                                 f"({len(choices[prop])} classes); expected at least "
                                 f"{2 * len(choices[prop])} (a meta-train and a meta-test net per class)")
    least = smallest(choices, input_shape, classes)
    if meta["slice_length"] > least:
        raise ZooConfigError(f"zoo.meta.slice_length = {meta['slice_length']} is longer than the "
                             f"smallest net of zoo.choices ({least} weights); expected at most {least}")
    first, last = meta["snapshots"]
    if not 0 <= first <= last < zoo["snapshots"]:
        raise ZooConfigError(f"zoo.meta.snapshots = {[first, last]!r}; expected first <= last "
                             f"within 0..{zoo['snapshots'] - 1} (zoo.snapshots = {zoo['snapshots']})")
