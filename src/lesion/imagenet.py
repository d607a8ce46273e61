"""ILSVRC2012 validation images: where to get them, checking them, decoding them once.

ImageNet cannot be downloaded without an account, so the user names a
directory in the config (`dataset.path`) in torchvision's ImageFolder layout:
one sub-directory per class, named by its WordNet id (`n01440364/`), holding
that class's validation JPEGs; 1000 classes, 50,000 images. Class indices are
the sorted WordNet ids, the order torchvision's pretrained weights predict.

`check_directory` is torch-free and cheap (one directory listing per class):
Snakemake runs it while it builds the DAG, so a missing or incomplete
directory stops the study before any job with one message that says what to
fetch, from where and where to put it. `decode` turns the JPEGs into the
tensor cache once: resized and centre-cropped by the weights' own transforms
and stored as uint8 (lossless: torchvision's PIL pipeline rounds to uint8
after the crop, before it scales to [0, 1]), 50000 x 3 x 224 x 224 bytes =
7.5 GB instead of 30 GB as float32. Loading scales it to [0, 1]; the rest of
the transforms (subtract mean, divide by std) runs inside each network, so
attacks keep their [0, 1] box (lesion.networks.normalise_input).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

CLASSES = 1000
IMAGES = 50_000
EXTENSIONS = (".jpeg", ".jpg", ".png")  # ImageNet's are .JPEG; compared in lower case
_WNID = re.compile(r"n\d{8}")

HOW_TO_GET = """\
lesion needs the ILSVRC2012 validation images ({images} JPEGs in {classes} class directories) \
and cannot download them (ImageNet requires an account). To get them:
  1. sign in at https://image-net.org/download-images and download, under ILSVRC2012,
     ILSVRC2012_img_val.tar (6.3 GB) and ILSVRC2012_devkit_t12.tar.gz (2.5 MB);
  2. put both files in one directory DIR and let torchvision check their md5 and sort the
     images into one directory per class (a few minutes, 6.4 GB more):
       python -c "import torchvision; torchvision.datasets.ImageNet('DIR', split='val')"
     which creates DIR/val/n01440364/ILSVRC2012_val_00000293.JPEG, ...;
  3. set dataset.path in the config to DIR/val.
Any copy in the same layout (<dataset.path>/<wnid>/<image>.JPEG) works."""


class MissingImagesError(ValueError):
    """The ImageNet directory is missing or incomplete; the message says how to fix it."""


def _problem(what: str, classes: int, images: int) -> MissingImagesError:
    return MissingImagesError(f"{what}.\n" + HOW_TO_GET.format(classes=classes, images=images))


def list_images(path: str | os.PathLike | None, *, classes: int = CLASSES,
                images: int = IMAGES, key: str = "dataset.path") -> list[tuple[str, int]]:
    """(image path, class index) of every image, checked to be complete.

    Raises MissingImagesError, naming what is wrong and how to get the data,
    unless `path` holds exactly `classes` WordNet-id directories with
    `images` images in all. Torch-free; the cost is one listing per class.
    `key` names where the path came from (the config's dataset.path, a step's --path).
    """
    if path is None or str(path).strip() == "":
        raise _problem(f"{key} is not set; expected the directory of the "
                       "ILSVRC2012 validation images", classes, images)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise _problem(f"{key} = {str(path)!r}: no such directory (looked for "
                       f"{root.resolve()})", classes, images)
    wnids = sorted(e.name for e in os.scandir(root) if e.is_dir() and _WNID.fullmatch(e.name))
    if len(wnids) != classes:
        loose = sum(1 for e in os.scandir(root) if e.is_file() and e.name.lower().endswith(EXTENSIONS))
        hint = (f" and {loose} loose images (the flat layout of ILSVRC2012_img_val.tar: sort them "
                "with step 2 below)" if loose else "")
        raise _problem(f"{key} = {str(path)!r} holds {len(wnids)} class "
                       f"directories (n########){hint}; expected {classes}", classes, images)
    found = []
    for index, wnid in enumerate(wnids):
        found += [(os.path.join(root, wnid, e.name), index) for e in sorted(
            os.scandir(root / wnid), key=lambda e: e.name)
            if e.is_file() and e.name.lower().endswith(EXTENSIONS)]
    if len(found) != images:
        raise _problem(f"{key} = {str(path)!r} holds {len(found)} images in "
                       f"its {classes} class directories; expected {images} (an interrupted copy "
                       "or extraction?)", classes, images)
    return found


def transforms(weights: Sequence[str]):
    """The preprocessing every one of `weights` (full torchvision enum names) shares.

    One tensor cache serves all models only if their transforms agree;
    different ones are an error naming them.
    """
    import torchvision

    presets = {name: torchvision.models.get_weight(name).transforms() for name in weights}
    kinds = {repr(t) for t in presets.values()}
    if len(kinds) != 1:
        listing = "; ".join(f"{name}: {' '.join(repr(t).split())}" for name, t in presets.items())
        raise ValueError(f"the weights' transforms differ ({listing}); expected one preprocessing "
                         "for every model of an ImageNet study")
    return next(iter(presets.values()))


def _load(item: tuple[str, int], preset) -> tuple:
    """One image resized and cropped as `preset` does, as uint8 CHW."""
    import torch
    from PIL import Image
    from torchvision.transforms import functional as F

    path, label = item
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except OSError as err:
        from lesion.files import InputFileError

        raise InputFileError(f"{path}: not a readable image ({err})") from err
    img = F.resize(img, preset.resize_size, interpolation=preset.interpolation, antialias=preset.antialias)
    img = F.center_crop(img, preset.crop_size)
    return F.pil_to_tensor(img), torch.tensor(label)


class _Images:
    """A map-style dataset over (path, label) for torch's DataLoader workers."""

    def __init__(self, items: list[tuple[str, int]], preset):
        self.items, self.preset = items, preset

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return _load(self.items[i], self.preset)


def decode(path: str | os.PathLike, out: str | os.PathLike, *, weights: Sequence[str],
           workers: int = 1, classes: int = CLASSES, images: int = IMAGES) -> None:
    """Decode every validation image once into `out` (the test split).

    `images` uint8 [N, 3, crop, crop], `labels` int64, `index` (position in
    the sorted file list); the metadata carries the transforms; `load_split`
    scales to [0, 1] and the networks normalise their own input
    (`fetch.import_weights` records the weights' mean and std).
    Progress goes to stderr (the job's log) as a tqdm bar.
    """
    import torch
    from tqdm import tqdm

    from lesion import tensorfiles

    items = list_images(path, classes=classes, images=images, key="--path")
    preset = transforms(weights)
    size = preset.crop_size[0]
    pixels = torch.empty(len(items), 3, size, size, dtype=torch.uint8)
    labels = torch.empty(len(items), dtype=torch.int64)
    loader = torch.utils.data.DataLoader(_Images(items, preset), batch_size=64,
                                         num_workers=max(workers - 1, 0))
    done = 0
    with tqdm(total=len(items), desc="decode ImageNet val", unit="img", mininterval=5) as bar:
        for x, y in loader:
            pixels[done:done + len(y)] = x
            labels[done:done + len(y)] = y
            done += len(y)
            bar.update(len(y))
    tensorfiles.save_tensors({"images": pixels, "labels": labels, "index": torch.arange(len(items))}, out, {
        "dataset": "imagenet", "split": "test", "source": str(path), "weights": list(weights),
        "transforms": " ".join(repr(preset).split()),
        "scale": 255,  # to [0, 1] when loaded; the weights' mean/std run inside the network
    })
