"""The filtering study's tables (lesion.files.TableKind): torch-free, shared by the steps
that write them and the plots that read them."""

from __future__ import annotations

from lesion.files import TableKind

METRICS = TableKind("filtering metrics", "filtering scores", (
    "dataset", "model", "epoch", "testset", "perturbation", "layer", "level", "variant",
    "metric", "value"))
CURVES = TableKind("filtering curves", "filtering scores", ("epoch", "testset", "layer", "level"))
SCORES = TableKind("filtering scores", "filtering scores", (
    "layer", "filter", "epoch", "score_clean", "score_adversarial", "score_difference",
    "class_clean", "class_adversarial", "class_difference"))
RETRAINING = TableKind("retraining", "filtering retrain", (
    "model", "epoch", "retrained", "replicate", "seed", "epochs_retrained", "top1_clean",
    "top1_adversarial", "top1_original_adversarial", "warning"))
