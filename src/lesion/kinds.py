"""The kinds of table the engine's steps write: the step that writes each, the columns
its readers rely on (torch-free, so that metrics and plots can check what they read).

Every table carries its kind in its Parquet metadata (lesion.files.write_table), and
every step checks the tables it is given against the kind it expects at entry
(lesion.files.read_table): a predictions table passed where a variants table belongs is
named as such, not found out by a KeyError later.
"""

from __future__ import annotations

from lesion.files import TableKind

# One row per variant of a sweep (lesion.sweeps.VARIANT_SCHEMA has every column).
VARIANTS = TableKind("variants", "sweep variants", (
    "variant", "dataset", "model", "perturbation", "layer", "level", "draw", "seed", "sha256",
    "weights", "rel_l2", "options"))
# One row per (variant, test image); the clean network's table too (its variant: the model).
PREDICTIONS = TableKind("predictions", "sweep predict", ("variant", "image", "label", "top5", "loss"))
METRICS = TableKind("metrics", "sweep metrics", (
    "dataset", "model", "testset", "perturbation", "layer", "level", "draw", "variant", "metric", "value"))
SUMMARY = TableKind("metrics summary", "sweep metrics", (
    "dataset", "model", "testset", "perturbation", "layer", "level", "variant", "metric", "mean", "std",
    "ci95", "n"))
# One row per weight layer of a network, in forward order (lesion.networks.layer_frame).
LAYERS = TableKind("layers", "model layers", ("name", "type", "parameters", "out_features", "norm",
                                              "traced"))
TRAINING = TableKind("training curve", "model train", ("epoch", "split", "loss", "accuracy"))
