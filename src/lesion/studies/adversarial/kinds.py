"""The adversarial study's tables (lesion.files.TableKind): torch-free, shared by the steps
that write them and the plots that read them."""

from __future__ import annotations

from lesion.files import TableKind

DISTORTION = TableKind("adversarial distortion", "adversarial distortion", (
    "model", "weight_decay", "train_split", "train_error", "test_error", "mean_distortion",
    "success_rate", "n_images", "n_at_target"))
TRANSFER = TableKind("adversarial transfer", "adversarial transfer", (
    "source", "target", "attack", "amplified", "sigma", "noise_std", "error", "mean_distortion"))
CROSS_TRAINING = TableKind("cross-training", "adversarial cross-training", (
    "source", "source_split", "target", "target_split", "amplified", "sigma", "noise_std", "error"))
ADVERSARIAL_TRAINING = TableKind("adversarial training", "adversarial training-table", (
    "model", "regime", "replicate", "seed", "test_error", "test_error_mean", "test_error_low",
    "test_error_high"))
KINDS = {k.step.split()[-1]: k for k in (DISTORTION, TRANSFER, CROSS_TRAINING, ADVERSARIAL_TRAINING)}
