"""Where the filtering sweep writes its tables, under results/{dataset}/{model}/filtering.

Torch-free, so the scores step finds its inputs without importing torch; the
rules spell the same paths (workflow/rules/helpers/filtering.smk).
"""

from __future__ import annotations

import os
from pathlib import Path

# The test sets of every checkpoint: the clean test split and its FGSM set made
# against that checkpoint (the same images, attacked).
CLEAN, ADVERSARIAL = TESTSETS = ("clean", "fgsm")


def variants_path(out_dir: str | os.PathLike, epoch: int) -> Path:
    """Every variant of every layer and filter of one checkpoint (sweep.VARIANT_SCHEMA)."""
    return Path(out_dir) / f"epoch{epoch}" / "variants.parquet"


def predictions_path(out_dir: str | os.PathLike, epoch: int, testset: str,
                     unfiltered: bool = False) -> Path:
    """Predictions of every variant on one test set, or of the unfiltered checkpoint."""
    name = f"{testset}_none" if unfiltered else testset
    return Path(out_dir) / f"epoch{epoch}" / "predictions" / f"{name}.parquet"


def fgsm_path(out_dir: str | os.PathLike, epoch: int) -> Path:
    """The FGSM set of one checkpoint: every clean test image attacked against it."""
    return Path(out_dir) / f"epoch{epoch}" / "fgsm.safetensors"
