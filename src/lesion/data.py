"""Datasets: export the raw data once, then decode and preprocess it once.

`export` writes the dataset as it ships (`resources/{dataset}/raw.safetensors`);
`make_tensors` turns it into the train/test tensors every later job reads
(`results/{dataset}/tensors/{split}.safetensors`: `images` float32 NCHW in
[0, 1], `labels` int64), so no job ever decodes or splits data again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lesion import files, io


def _digits_raw() -> dict[str, torch.Tensor]:
    """scikit-learn's bundled handwritten digits: 1797 8x8 images, values 0..16."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return {
        "images": torch.from_numpy(bunch.images.astype(np.uint8)),
        "labels": torch.from_numpy(bunch.target.astype(np.int64)),
    }


def _digits_preprocess(images: torch.Tensor) -> torch.Tensor:
    return (images.to(torch.float32) / 16.0).unsqueeze(1)


@dataclass(frozen=True)
class Dataset:
    """A dataset's shape and how to obtain and preprocess it."""

    num_classes: int
    input_shape: tuple[int, int, int]
    raw: Callable[[], dict[str, torch.Tensor]]
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    source: str


DATASETS: dict[str, Dataset] = {
    "digits": Dataset(10, (1, 8, 8), _digits_raw, _digits_preprocess,
                      "sklearn.datasets.load_digits (UCI optical digits, shipped with scikit-learn)"),
}


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"dataset {name!r} is unknown; expected one of {sorted(DATASETS)}") from None


def export(name: str, out: str | os.PathLike) -> None:
    """Write dataset `name` as it ships, untouched, to `out`."""
    io.save_tensors(get(name).raw(), out, {"dataset": name, "source": get(name).source})


def make_tensors(name: str, raw_path: str | os.PathLike, train_out: str | os.PathLike,
                 test_out: str | os.PathLike, *, test_fraction: float, seed: int) -> None:
    """Preprocess and split the raw data into train and test tensors.

    The split is stratified by label and seeded, so it is the same on every
    machine for the same (test_fraction, seed).
    """
    from sklearn.model_selection import train_test_split  # slow import; this step alone needs it

    spec = get(name)
    raw = io.load_tensors(raw_path)
    labels = raw["labels"].numpy()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed)
    images = spec.preprocess(raw["images"])
    meta = {"dataset": name, "test_fraction": test_fraction, "seed": seed}
    for idx, out, split in ((np.sort(train_idx), train_out, "train"),
                            (np.sort(test_idx), test_out, "test")):
        index = torch.from_numpy(idx)
        io.save_tensors({"images": images[index], "labels": raw["labels"][index], "index": index},
                        out, {**meta, "split": split})


def load_split(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a preprocessed split."""
    tensors = io.load_tensors(path)
    for key in ("images", "labels"):
        if key not in tensors:
            raise files.InputFileError(f"{path}: no {key!r} tensor; expected a file made by "
                                    "`python -m lesion tensors`")
    return tensors["images"], tensors["labels"]
