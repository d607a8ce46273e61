"""Names a config may use, each registered once: models, datasets, operators, attacks.

Everything else derives from these rows: lesion.models' builders, lesion.operators'
operator table, the schema's enums (`x-enum`, lesion.config.load_schema), the CLI's
choices. Torch-free on purpose: Snakemake imports this while it parses the workflow.
`tests/test_catalog.py` checks the rows against the built networks, the data and the
schema, and fails on a list of these names written anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    """Everything the workflow needs to know about a model, without building it.

    conv, fc: the number of conv and dense weight layers (named conv1..convN,
    then fc1..fcM in forward order, see models.layers); datasets: the
    datasets that can feed it (input shape and class count fit); weights:
    its pretrained torchvision weights by full enum name, or None when the
    DAG trains it; family: how lesion.models builds it (one of its
    FAMILIES: "torchvision" is torchvision's model of this name); hidden: the
    hidden layer widths of the "fc" family.
    """

    name: str
    conv: int
    fc: int
    datasets: tuple[str, ...]
    weights: str | None = None
    family: str = "torchvision"
    hidden: tuple[int, ...] = ()


# Which part of the training split a model sees: all of it, or one of two
# fixed, disjoint, seeded, stratified halves (data.training_part), for
# Szegedy et al.'s cross-training-set experiment.
TRAIN_SPLITS = ("all", "P1", "P2")

# The attacks that make adversarial test sets (lesion.attacks; the adversarial study's
# sets, the sweeps' extra test sets, adversarial training): lbfgs is Szegedy et al.'s
# box-constrained L-BFGS, fgsm and pgd are L-infinity attacks of size eps.
ATTACKS: tuple[str, ...] = ("lbfgs", "fgsm", "pgd")

# Float32 arithmetic on a GPU (evaluate.set_precision): "ieee" keeps every
# mantissa bit (bit-fault studies need them); "tf32" lets matmuls and cuDNN
# convolutions round inputs to 10 mantissa bits, faster on Ampere and later.
PRECISIONS = ("ieee", "tf32")

_IMAGENET = ("imagenet",)
_SMALL = ("digits", "mnist", "cifar10")
# One row per model: the schema's model names, the CLI's choices, the config check and
# lesion.models' builders are all derived from this table (tests/test_catalog.py checks
# its layer counts against the built networks). The pretrained weights are the
# original IMAGENET1K_V1 releases, which share one preprocessing (resize 256,
# centre crop 224, bilinear, ImageNet mean/std), so one tensor cache serves
# every model; tests/test_download.py checks them against torchvision.
MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("cnn", 2, 2, _SMALL, family="cnn"),
    ModelInfo("mlp", 0, 3, _SMALL, family="mlp"),
    # Szegedy et al. (2013)'s networks: sigmoid hidden units, a softmax output
    ModelInfo("fc10", 0, 1, _SMALL, family="fc"),
    ModelInfo("fc100_100_10", 0, 3, _SMALL, family="fc", hidden=(100, 100)),
    ModelInfo("fc200_200_10", 0, 3, _SMALL, family="fc", hidden=(200, 200)),
    ModelInfo("fc123_456_10", 0, 3, _SMALL, family="fc", hidden=(123, 456)),
    # a 400-unit sigmoid code with a softmax on top; fc1 is pretrained as an
    # autoencoder's encoder (lesion.pretrain)
    ModelInfo("ae400_10", 0, 2, _SMALL, family="fc", hidden=(400,)),
    # resnet18 for 32x32 inputs: 3x3 stem, no max-pool
    ModelInfo("resnet18_cifar", 20, 1, ("cifar10",), family="resnet18_cifar"),
    ModelInfo("alexnet", 5, 3, _IMAGENET, "AlexNet_Weights.IMAGENET1K_V1"),
    ModelInfo("vgg16", 13, 3, _IMAGENET, "VGG16_Weights.IMAGENET1K_V1"),
    ModelInfo("resnet18", 20, 1, _IMAGENET, "ResNet18_Weights.IMAGENET1K_V1"),
    ModelInfo("resnet50", 53, 1, _IMAGENET, "ResNet50_Weights.IMAGENET1K_V1"),
    ModelInfo("squeezenet1_1", 26, 0, _IMAGENET, "SqueezeNet1_1_Weights.IMAGENET1K_V1"),
    ModelInfo("shufflenet_v2_x1_0", 56, 1, _IMAGENET, "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1"),
)}

# Where each dataset's raw data comes from: "export" (shipped in a package),
# "download" (torchvision's dataset class, official train/test split) or
# "directory" (images the user fetched by hand; named by dataset.path).
DATASET_SOURCES: dict[str, str] = {
    "digits": "export",
    "mnist": "download",
    "cifar10": "download",
    "imagenet": "directory",
}

# Where a dataset of one's own comes from (dataset.source, lesion.userdata): a
# directory in torchvision's ImageFolder layout, or one safetensors file.
USER_SOURCES: tuple[str, ...] = ("folder", "tensors")

# Views of MODELS, for the code that asks one question.
LAYER_COUNTS: dict[str, tuple[int, int]] = {m.name: (m.conv, m.fc) for m in MODELS.values()}
DATASET_MODELS: dict[str, tuple[str, ...]] = {
    d: tuple(m.name for m in MODELS.values() if d in m.datasets) for d in DATASET_SOURCES}
PRETRAINED_WEIGHTS: dict[str, str] = {m.name: m.weights for m in MODELS.values() if m.weights}
# A dataset of one's own feeds every network the DAG trains: each is built from the
# dataset's image shape and class count. Pretrained ones predict ImageNet's 1000 classes.
USER_DATASET_MODELS: tuple[str, ...] = tuple(m.name for m in MODELS.values() if m.weights is None)


def dataset_models(dataset: str) -> tuple[str, ...]:
    """The architectures `dataset` can feed: a built-in dataset's from MODELS, any
    other name's (a dataset of one's own) USER_DATASET_MODELS."""
    return DATASET_MODELS.get(dataset, USER_DATASET_MODELS)

@dataclass(frozen=True)
class OperatorInfo:
    """One operator of lesion.operators, everything but its function (the function of the
    same name there).

    levels: (lowest, highest) level allowed; highest None means unbounded.
    sweep: its config's sweep (a `$defs` entry of the perturbations schema).
    acts_on: what it is given: "tensors" (the layer's own parameters), "units" (also the
        BatchNorm that follows, models.unit_tensors), "weights" (the Conv/Linear weight
        alone, models.weight_tensors) or "activations" (the layer's outputs, per input:
        the variants table records its seeds and predict draws its masks).
    options: its keyword options, passed to perturb.apply and recorded in the variants
        table (column `options`, JSON), so that a row regenerates alone.
    """

    name: str
    levels: tuple[float, float | None]
    sweep: str
    acts_on: str = "tensors"
    options: tuple[str, ...] = ()


# Every operator, once: perturb's functions, the schema's sweeps, the CLI's choices and the
# checks derive from this table (tests/test_catalog.py).
OPERATORS: dict[str, OperatorInfo] = {o.name: o for o in (
    OperatorInfo("synapse_knockout", (0.0, 1.0), "fraction_sweep"),
    OperatorInfo("node_knockout", (0.0, 1.0), "fraction_sweep", "units"),
    OperatorInfo("gaussian", (0.0, None), "scale_sweep"),
    OperatorInfo("redraw", (0.0, 1.0), "fraction_sweep"),
    OperatorInfo("bitflip", (0.0, 1.0), "bit_sweep", options=("bits",)),  # per-bit probability
    OperatorInfo("stuck_at_zero", (0.0, 1.0), "bit_sweep", options=("bits",)),
    OperatorInfo("stuck_at_one", (0.0, 1.0), "bit_sweep", options=("bits",)),
    OperatorInfo("crash", (0.0, 1.0), "fraction_sweep", "activations"),  # per-neuron p
    # the synaptic filters (Pravin et al. 2024): deterministic, on the Conv and Linear
    # weights only; a level is the normalised alpha, min + level * (max - min)
    OperatorInfo("highpass", (0.0, 1.0), "filter_sweep", "weights"),
    OperatorInfo("lowpass", (0.0, 1.0), "filter_sweep", "weights"),
    OperatorInfo("pulse", (0.0, 1.0), "filter_sweep", "weights"),  # alpha: the band's centre
)}

# Views of OPERATORS, for the code that asks one question.
OPERATOR_LEVELS: dict[str, tuple[float, float | None]] = {o.name: o.levels for o in OPERATORS.values()}
OPERATOR_OPTIONS: dict[str, tuple[str, ...]] = {o.name: o.options for o in OPERATORS.values()
                                                if o.options}
FILTERS: tuple[str, ...] = tuple(o.name for o in OPERATORS.values() if o.sweep == "filter_sweep")
ACTIVATION_OPERATORS: tuple[str, ...] = tuple(
    o.name for o in OPERATORS.values() if o.acts_on == "activations")
UNIT_OPERATORS: tuple[str, ...] = tuple(o.name for o in OPERATORS.values() if o.acts_on == "units")
WEIGHT_OPERATORS: tuple[str, ...] = tuple(o.name for o in OPERATORS.values() if o.acts_on == "weights")
BIT_OPERATORS: tuple[str, ...] = tuple(o.name for o in OPERATORS.values() if o.sweep == "bit_sweep")

# The layer name of a filter applied to every Conv and Linear layer at once
# ("global" filtering), each with its own [min, max].
ALL_LAYERS = "all"


def layer_names(model: str) -> list[str]:
    """The named weight layers of `model` in forward order."""
    n_conv, n_fc = LAYER_COUNTS[model]
    return [f"conv{i}" for i in range(1, n_conv + 1)] + [f"fc{i}" for i in range(1, n_fc + 1)]


def check_sweep(perturbation: str, levels: list[float]) -> None:
    """Raise ValueError unless `perturbation` is an operator and `levels` fit it.

    The same rules as the config schema, for the steps run by hand.
    """
    if perturbation not in OPERATOR_LEVELS:
        raise ValueError(f"perturbation {perturbation!r} is unknown; expected one of "
                         f"{sorted(OPERATOR_LEVELS)}")
    low, high = OPERATOR_LEVELS[perturbation]
    if not levels:
        raise ValueError(f"no levels for {perturbation}; expected at least one")
    for level in levels:
        if not (low <= level and (high is None or level <= high)):  # also refuses NaN
            expected = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(f"{perturbation} level {level!r} is out of range; expected a "
                             f"number {expected}")
    duplicates = sorted({x for x in levels if levels.count(x) > 1})
    if duplicates:
        raise ValueError(f"{perturbation} levels {levels} repeat {duplicates}; expected each "
                         "level once (a repeated level would repeat its variant ids)")
