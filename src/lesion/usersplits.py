"""A dataset of one's own decoded once into the train/test tensor cache.

`write` reads what lesion.userdata lists and checks. A folder's images are
decoded with PIL in a DataLoader (as lesion.imagenet decodes ImageNet's),
converted to `channels` (PIL's "RGB" or "L"), scaled to cover `size` and
centre-cropped to it (`fit`), and stored as uint8 with `scale` 255 in the
metadata (lesion.data.load_split divides by it): 4x smaller than float32,
and lossless since the pixels are uint8 after the crop. A tensors file's
images are stored as they are (float as float32, uint8 with `scale`). No mean
or std is subtracted: images are in [0, 1] when loaded. Without a train
split, the images are split by lesion.data.split_indices (stratified,
seeded), `index` their positions in the listing or the file.

A dataset of one's own is not in lesion.data.DATASETS, so every split's
metadata carries what that registry holds for a built-in one: num_classes,
input_shape (C, H, W) and the class names, read back by
`lesion.data.get(name, split=...)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from lesion import data, tensorfiles, userdata
from lesion.catalog import USER_SOURCES
from lesion.userdata import DataError

log = logging.getLogger(__name__)
MODES = {1: "L", 3: "RGB"}


def fit(img: Image.Image, size: Sequence[int]) -> Image.Image:
    """`img` scaled (PIL bilinear) by s = max(height / H, width / W), so that it covers
    `size` = (height, width) keeping its aspect ratio, each side rounded and at least
    the target's, then centre-cropped to `size` (the odd pixel off the bottom and right)."""
    height, width = size
    s = max(height / img.height, width / img.width)
    scaled = (max(width, round(img.width * s)), max(height, round(img.height * s)))
    if scaled != img.size:
        img = img.resize(scaled, Image.Resampling.BILINEAR)
    left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
    return img.crop((left, top, left + width, top + height))


class _Images:
    """A map-style dataset over image paths for torch's DataLoader workers: (pixels uint8
    CHW, "" ) or, for a file PIL cannot read, (zeros, the error) so that the step stops
    with one line instead of a worker's traceback."""

    def __init__(self, paths: list[str], size: Sequence[int], channels: int):
        self.paths, self.size, self.channels = paths, tuple(size), channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            with Image.open(self.paths[i]) as img:
                img = fit(img.convert(MODES[self.channels]), self.size)
        except OSError as err:
            return (torch.zeros(self.channels, *self.size, dtype=torch.uint8),
                    f"{self.paths[i]}: not a readable image ({err})")
        pixels = np.asarray(img, dtype=np.uint8).reshape(*self.size, self.channels)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1), ""


def decode(paths: list[str], size: Sequence[int], channels: int, workers: int = 1) -> torch.Tensor:
    """The images at `paths` as uint8 (N, channels, height, width), fitted to `size`."""
    from tqdm import tqdm

    pixels = torch.empty(len(paths), channels, *size, dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(_Images(paths, size, channels), batch_size=64,
                                         num_workers=max(workers - 1, 0))
    done = 0
    with tqdm(total=len(paths), desc="decode images", unit="img", mininterval=5) as bar:
        for x, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise DataError(bad[0])
            pixels[done:done + len(x)] = x
            done += len(x)
            bar.update(len(x))
    return pixels


def _folder(listed: userdata.Folder, size, channels: int, workers: int):
    """{split: (images, labels)} of a listed folder, and its class names."""
    splits = {}
    for split, items in listed.splits.items():
        paths, labels = zip(*items, strict=True)
        splits[split] = (decode(list(paths), size, channels, workers),
                         torch.tensor(labels, dtype=torch.int64))
    return splits, listed.classes


def _float_pixels(images: torch.Tensor, what: str) -> torch.Tensor:
    """Float images as float32, refused unless every value is in [0, 1]."""
    images = images.to(torch.float32)
    if not bool(torch.isfinite(images).all()):
        raise DataError(f"{what} holds NaN or infinite values; expected floats in [0, 1]")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise DataError(f"{what} holds values in [{low:g}, {high:g}]; expected floats in [0, 1] "
                        "(or uint8 0..255)")
    return images


def _tensors(path, key: str):
    """{split: (images, labels)} of a tensors file, and its class names ("0", "1", ...)."""
    layout = userdata.tensors_file(path, key)
    raw = tensorfiles.load_tensors(path)
    prefixes = {"train": "train_", "test": ""} if "train" in layout.labels else {"all": ""}
    splits = {}
    for split, prefix in prefixes.items():
        images = raw[f"{prefix}images"]
        images = images.unsqueeze(1) if images.dim() == 3 else images
        if images.dtype != torch.uint8:
            images = _float_pixels(images, f"{key} = {str(path)!r}: {prefix + 'images'!r}")
        splits[split] = (images, raw[f"{prefix}labels"].to(torch.int64))
    return splits, [str(c) for c in range(layout.num_classes)]


def write(name: str, source: str, path: str | os.PathLike, train_out: str | os.PathLike,
          test_out: str | os.PathLike, *, test_fraction: float, seed: int,
          size: Sequence[int] | None = None, channels: int = 3, workers: int = 1,
          key: str = "--path") -> None:
    """The user-tensors step: dataset `name`'s train and test splits from `path`.

    `source` is "folder" (needs `size`, (height, width), and `channels`, 1 or 3)
    or "tensors". Every check runs before the first file is written, so a bad
    dataset leaves nothing behind. `key` names the path in messages.
    """
    if source not in USER_SOURCES:
        raise DataError(f"source {source!r} is unknown; expected one of {list(USER_SOURCES)}")
    if source == "folder":
        if size is None or len(size) != 2 or min(size) < 1 or channels not in MODES:
            raise DataError(f"a folder needs size (height, width >= 1) and channels 1 or 3; got "
                            f"size {size!r}, channels {channels!r}")
        listed = userdata.folder(path, key)  # listed first: a bad layout costs no decoding
        if "all" in listed.splits:
            userdata.check_splittable([y for _, y in listed.splits["all"]], test_fraction,
                                      f"{key} = {str(path)!r}")
        splits, classes = _folder(listed, size, channels, workers)
        extra = {"size": list(size), "channels": channels}
    else:
        splits, classes = _tensors(path, key)
        if "all" in splits:
            userdata.check_splittable(splits["all"][1].tolist(), test_fraction,
                                      f"{key} = {str(path)!r}")
        extra = {}
    meta = {"dataset": name, "source": f"{source} {path}", "num_classes": len(classes),
            "input_shape": list(next(iter(splits.values()))[0].shape[1:]), "classes": classes,
            **extra}
    if "all" in splits:
        images, labels = splits.pop("all")
        train, test = data.split_indices(labels, test_fraction=test_fraction, seed=seed)
        splits = {"train": (images[train], labels[train], train),
                  "test": (images[test], labels[test], test)}
        meta.update(test_fraction=test_fraction, seed=seed)
    else:
        splits = {s: (x, y, torch.arange(len(y))) for s, (x, y) in splits.items()}
    for split, out in (("train", train_out), ("test", test_out)):
        images, labels, index = splits[split]
        scale = {"scale": 255} if images.dtype == torch.uint8 else {}
        tensorfiles.save_tensors({"images": images, "labels": labels, "index": index}, out,
                        {**meta, **scale, "split": split})
        log.info("%s split of %s: %d images of shape %s, %d classes", split, name, len(labels),
                 list(images.shape[1:]), len(classes))
