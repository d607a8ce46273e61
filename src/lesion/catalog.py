"""Names a config may use: datasets, models, their weight layers, operators.

Torch-free on purpose: Snakemake imports this while it parses the workflow,
and config validation must not pay for importing torch. `tests/test_catalog.py`
checks every name here against the real registries in `models`, `data` and
`perturb`.
"""

from __future__ import annotations

# Number of (conv, dense) weight layers of each architecture; layer names are
# conv1..convN then fc1..fcM, numbered in forward order (see models.layers).
LAYER_COUNTS: dict[str, tuple[int, int]] = {
    "cnn": (2, 2),
    "mlp": (0, 3),
    "alexnet": (5, 3),
    "vgg16": (13, 3),
    "resnet18": (20, 1),
    "resnet50": (53, 1),
    "squeezenet1_1": (26, 0),
    "shufflenet_v2_x1_0": (56, 1),
}

# Models each dataset can feed (input shape and class count must fit).
DATASET_MODELS: dict[str, tuple[str, ...]] = {
    "digits": ("cnn", "mlp"),
}

# Operator name -> (lowest, highest) level allowed; None means unbounded.
OPERATOR_LEVELS: dict[str, tuple[float, float | None]] = {
    "synapse_knockout": (0.0, 1.0),
    "node_knockout": (0.0, 1.0),
    "gaussian": (0.0, None),
    "redraw": (0.0, 1.0),
}


def layer_names(model: str) -> list[str]:
    """The named weight layers of `model` in forward order."""
    n_conv, n_fc = LAYER_COUNTS[model]
    return [f"conv{i}" for i in range(1, n_conv + 1)] + [f"fc{i}" for i in range(1, n_fc + 1)]
