"""Datasets: export or download the raw data once, then decode and preprocess it once.

`export` writes a dataset that ships in a package as it ships
(`resources/{dataset}/raw.safetensors`); MNIST and CIFAR10 are downloaded by
torchvision's dataset classes (`lesion.fetch`, `resources/{dataset}/torchvision/`).
`make_tensors` turns either into the train/test tensors every later job reads
(`results/{dataset}/tensors/{split}.safetensors`: `images` float32 NCHW in
[0, 1], `labels` int64), so no job ever decodes or splits data again.
ImageNet's validation images are decoded by `lesion.imagenet` (stored as
uint8, scaled to [0, 1] by `load_split`; the weights' mean/std run inside
the network). A dataset of one's own (config
`dataset.source`) is decoded by `lesion.usersplits`; it is not in `DATASETS`,
so its splits carry its class count and image shape (`get(name, split=...)`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lesion import files, tensorfiles


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


def _mnist_official(root: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """MNIST's official 60,000/10,000 split from torchvision's download in `root`."""
    from torchvision.datasets import MNIST

    splits = {}
    for split, train in (("train", True), ("test", False)):
        ds = MNIST(root, train=train, download=False)  # checks the files are there
        splits[split] = {"images": ds.data, "labels": ds.targets.to(torch.int64)}
    return splits


def _cifar10_official(root: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """CIFAR10's official 50,000/10,000 split (images NCHW uint8)."""
    from torchvision.datasets import CIFAR10

    splits = {}
    for split, train in (("train", True), ("test", False)):
        ds = CIFAR10(root, train=train, download=False)  # checks every file's md5
        splits[split] = {"images": torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                         "labels": torch.tensor(ds.targets, dtype=torch.int64)}
    return splits


def _uint8_preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1], NCHW (a channel axis added to NHW)."""
    images = images.unsqueeze(1) if images.dim() == 3 else images
    return images.to(torch.float32).div_(255.0)  # in place: no second float copy


@dataclass(frozen=True)
class Dataset:
    """A dataset's shape and how to obtain and preprocess it."""

    num_classes: int
    input_shape: tuple[int, int, int]
    raw: Callable[[], dict[str, torch.Tensor]] | None  # None: not shipped in a package
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    source: str
    # Reads the official {"train": {...}, "test": {...}} split from a download
    # directory (datasets fetched by lesion.fetch); None: split by test_fraction.
    official: Callable[[str | os.PathLike], dict[str, dict[str, torch.Tensor]]] | None = None
    classes: tuple[str, ...] = ()  # class names, by index (a dataset of one's own)


DATASETS: dict[str, Dataset] = {
    "digits": Dataset(10, (1, 8, 8), _digits_raw, _digits_preprocess,
                      "sklearn.datasets.load_digits (UCI optical digits, shipped with scikit-learn)"),
    "mnist": Dataset(10, (1, 28, 28), None, _uint8_preprocess,
                     "torchvision.datasets.MNIST (LeCun et al.; official train/test split)",
                     official=_mnist_official),
    "cifar10": Dataset(10, (3, 32, 32), None, _uint8_preprocess,
                       "torchvision.datasets.CIFAR10 (Krizhevsky 2009; official train/test split)",
                       official=_cifar10_official),
    "imagenet": Dataset(1000, (3, 224, 224), None, _uint8_preprocess,
                        "ILSVRC2012 validation images from dataset.path (lesion.imagenet)"),
}


def get(name: str, split: str | os.PathLike | None = None) -> Dataset:
    """Dataset `name`: a registered one, else the one of your own whose `split` (any split
    file of it, as `python -m lesion data user-tensors` writes them) carries its shape.

    A registered dataset ignores `split`; a step that has a split file passes it, so
    that it serves every dataset.
    """
    if name in DATASETS:
        return DATASETS[name]
    if split is None:
        raise ValueError(f"dataset {name!r} is unknown; expected one of {sorted(DATASETS)}, or a "
                         "dataset of your own with one of its split files")
    meta = tensorfiles.load_metadata(split)
    if meta.get("dataset") != name or "num_classes" not in meta:
        raise files.InputFileError(
            f"{split}: not a split of dataset {name!r} (its metadata names dataset "
            f"{meta.get('dataset')!r} and {'no' if 'num_classes' not in meta else 'a'} class "
            f"count); expected a split made by `python -m lesion data user-tensors --dataset {name}`")
    return Dataset(int(meta["num_classes"]), tuple(meta["input_shape"]), None, _uint8_preprocess,
                   meta.get("source", ""), classes=tuple(meta.get("classes", ())))


def carried(dataset: str, spec: Dataset) -> dict:
    """The metadata a split file of `dataset` carries so that `get(dataset, split=...)`
    can rebuild `spec`: none for a registered dataset (its files stay as they were)."""
    if dataset in DATASETS:
        return {}
    return {"num_classes": spec.num_classes, "input_shape": list(spec.input_shape),
            "classes": list(spec.classes), "source": spec.source}


def export(name: str, out: str | os.PathLike) -> None:
    """Write dataset `name` as it ships, untouched, to `out`."""
    if get(name).raw is None:
        raise ValueError(f"dataset {name!r} does not ship in a package; expected one of "
                         f"{sorted(k for k, v in DATASETS.items() if v.raw)} (MNIST and CIFAR10 "
                         "come from `python -m lesion data download`)")
    tensorfiles.save_tensors(get(name).raw(), out, {"dataset": name, "source": get(name).source})


def make_tensors(name: str, raw_path: str | os.PathLike, train_out: str | os.PathLike,
                 test_out: str | os.PathLike, *, test_fraction: float, seed: int) -> None:
    """Preprocess and split the raw data into train and test tensors.

    The split is stratified by label and seeded, so it is the same on every
    machine for the same (test_fraction, seed).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction {test_fraction!r} is out of range; expected a number "
                         "between 0 and 1 (exclusive)")
    spec = get(name)
    if spec.official is not None:
        return _official_tensors(name, raw_path, train_out, test_out)
    raw = tensorfiles.load_tensors(raw_path)
    missing = [key for key in ("images", "labels") if key not in raw]
    if missing or len(raw.get("images", ())) != len(raw.get("labels", ())):
        raise files.InputFileError(
            f"{raw_path}: holds tensors {sorted(raw)} of lengths "
            f"{ {k: len(v) for k, v in raw.items()} }; expected 'images' and 'labels' of the "
            f"same length, as written by `python -m lesion data export --dataset {name}`")
    train_idx, test_idx = split_indices(raw["labels"], test_fraction=test_fraction, seed=seed)
    images = spec.preprocess(raw["images"])
    meta = {"dataset": name, "test_fraction": test_fraction, "seed": seed}
    for index, out, split in ((train_idx, train_out, "train"), (test_idx, test_out, "test")):
        tensorfiles.save_tensors({"images": images[index], "labels": raw["labels"][index], "index": index},
                        out, {**meta, "split": split})


def split_indices(labels: torch.Tensor, *, test_fraction: float, seed: int,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted positions of the train and the test images: scikit-learn's stratified,
    seeded split, the same on every machine for the same (test_fraction, seed)."""
    from sklearn.model_selection import train_test_split  # slow import; only splitting needs it

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels.numpy(),
        random_state=seed)
    return torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))


def _official_tensors(name: str, root: str | os.PathLike, train_out: str | os.PathLike,
                      test_out: str | os.PathLike) -> None:
    """The dataset's own train/test split, preprocessed; `index` is the position in it."""
    spec = get(name)
    try:
        splits = spec.official(root)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted ..."
        raise files.InputFileError(f"{root}: no complete {name} download ({err}); expected the "
                                   f"directory written by `python -m lesion data download --dataset "
                                   f"{name}`") from err
    for split, out in (("train", train_out), ("test", test_out)):
        raw = splits[split]
        tensorfiles.save_tensors({"images": spec.preprocess(raw["images"]), "labels": raw["labels"],
                         "index": torch.arange(len(raw["labels"]))},
                        out, {"dataset": name, "split": split, "source": spec.source})


def training_part(labels: torch.Tensor, part: str, *, seed: int) -> torch.Tensor:
    """Positions of the training images in `part`: "all", or the half "P1" or "P2".

    P1 and P2 are disjoint and together cover the split: each class's images
    in a seeded random order, the first half of each class to P1 (the smaller
    half when the count is odd), the rest to P2. Stratified, so both halves
    keep the class balance (Szegedy et al. 2013 split MNIST's 60,000 training
    images into two halves of 30,000 for the cross-training-set experiment).
    """
    from lesion.catalog import TRAIN_SPLITS

    if part not in TRAIN_SPLITS:
        raise ValueError(f"train split {part!r} is unknown; expected one of {list(TRAIN_SPLITS)}")
    if part == "all":
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        half = len(members) // 2
        chosen.append(members[:half] if part == "P1" else members[half:])
    return torch.sort(torch.cat(chosen)).values


def _maker(dataset: str) -> str:
    """The step that makes `dataset`'s splits."""
    if dataset not in DATASETS:
        return f"`python -m lesion data user-tensors --dataset {dataset}`"
    if DATASETS[dataset].raw is None and DATASETS[dataset].official is None:
        return "`python -m lesion data imagenet-tensors`"
    return f"`python -m lesion data tensors --dataset {dataset}`"


def _check_split(path, dataset: str, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a file that is not a split of `dataset`: another dataset's, or raw data."""
    meta = tensorfiles.load_metadata(path)
    if meta.get("dataset") != dataset:
        raise files.InputFileError(f"{path}: a split of dataset {meta.get('dataset')!r}; expected "
                                   f"one of {dataset!r}, made by {_maker(dataset)}")
    if "split" not in meta:
        raise files.InputFileError(f"{path}: not a train or test split (its metadata names no "
                                   "split: raw data, as `python -m lesion data export` writes "
                                   f"it?); expected a split made by {_maker(dataset)}")
    shape = tuple(tensors["images"].shape[1:])
    expected = get(dataset, split=path).input_shape
    if shape not in (expected, expected[1:]):  # uint8 splits may lack the channel axis
        raise files.InputFileError(f"{path}: images of shape {shape}; expected {dataset}'s "
                                   f"{expected}, made by {_maker(dataset)}")


def load_split(path: str | os.PathLike, dataset: str | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a preprocessed split, images float32 NCHW.

    A split stored as uint8 (ImageNet, a dataset of your own: `scale`
    metadata 255) is scaled to [0, 1] here; a network's own mean/std runs
    inside it (lesion.networks.normalise_input). With `dataset`,
    the file must be a split of that dataset (its metadata and image shape):
    a step given raw data or another dataset's split says so, instead of
    failing inside the network on shapes that do not multiply.
    """
    tensors = tensorfiles.load_tensors(path)
    for key in ("images", "labels"):
        if key not in tensors:
            raise files.InputFileError(f"{path}: no {key!r} tensor; expected a file made by "
                                       "`python -m lesion data tensors`")
    if dataset is not None:
        _check_split(path, dataset, tensors)
    images = tensors["images"]
    if images.dtype == torch.uint8:
        if tensorfiles.load_metadata(path).get("scale") != 255:
            raise files.InputFileError(f"{path}: uint8 images without 'scale' metadata; expected "
                                       "a file made by `python -m lesion data imagenet-tensors` "
                                       "or `python -m lesion data user-tensors`")
        images = _uint8_preprocess(images)  # pixels 0..255 to [0, 1]
    return images, tensors["labels"]
