"""A dataset of one's own: what its files must hold, checked before anything runs.

Two sources (config `dataset.source`, docs/configuration.md "A dataset of your own"):

- `folder`: torchvision's ImageFolder layout, one directory per class holding
  its images, class index = position among the sorted directory names (as
  ImageFolder). `path/train/` and `path/test/` in that layout; or only one of
  them, or the class directories in `path` itself, split by test_fraction.
- `tensors`: one safetensors file, `images` (N, C, H, W) or (N, H, W) float in
  [0, 1] or uint8, `labels` (N) integers; optionally `train_images` and
  `train_labels` (else the file is split by test_fraction) and the metadata
  entry `num_classes` (else the largest label + 1).

Torch-free and cheap (a listing of the folder; a file's header and labels),
so the config check runs it while Snakemake parses the workflow: a bad dataset
stops the study with one line naming the key, the value and what was
expected. The step that decodes the data (lesion.usersplits) checks again,
and checks the pixels too.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

# torchvision.datasets.folder.IMG_EXTENSIONS, compared in lower case
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
# The tensors a `tensors` file may hold: the test split (or the whole data set
# when there is no train split), and optionally the train split.
TENSOR_KEYS = ("images", "labels", "train_images", "train_labels")
_FLOATS = ("F16", "BF16", "F32", "F64")
_INTEGERS = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")


class DataError(ValueError):
    """The dataset's files cannot make a train and a test split; the message says why."""


@dataclass(frozen=True)
class Folder:
    """A listed ImageFolder: class names (sorted) and (image path, class index) per split:
    "train" and "test" as given, or "all" to be split by test_fraction."""

    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]


@dataclass(frozen=True)
class TensorsFile:
    """What a checked tensors file holds: its class count and image shape (C, H, W),
    and the labels per split ("train" and "test", or "all" to be split)."""

    num_classes: int
    input_shape: tuple[int, int, int]
    labels: dict[str, list[int]]


def _class_images(root: Path, what: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes and images of one ImageFolder root, found as ImageFolder finds them:
    every sub-directory is a class, its image files at any depth, in sorted order."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if len(classes) < 2:
        raise DataError(f"{what} holds {len(classes)} class directories {classes}; expected at "
                        "least 2 (ImageFolder layout: one directory of images per class)")
    found = []
    for index, name in enumerate(classes):
        images = []
        for parent, dirs, names in os.walk(root / name, followlinks=True):
            dirs.sort()
            images += [os.path.join(parent, n) for n in sorted(names)
                       if n.lower().endswith(EXTENSIONS)]
        if not images:
            raise DataError(f"{what}: class directory {name!r} holds no images; expected at least "
                            f"one file ending in {', '.join(EXTENSIONS)}")
        found += [(image, index) for image in images]
    return classes, found


def folder(path: str | os.PathLike, key: str = "dataset.path") -> Folder:
    """List and check an ImageFolder dataset (see the module's docstring); `key` names
    where the path came from (the config's dataset.path, a step's --path)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{key} = {str(path)!r}: no such directory; expected a folder in "
                        "ImageFolder layout (one directory of images per class)")
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir())
    given = [s for s in SPLITS if s in subdirs]
    if not given:
        classes, images = _class_images(root, f"{key} = {str(path)!r}")
        return Folder(classes, {"all": images})
    others = [d for d in subdirs if d not in SPLITS]
    if others:
        raise DataError(f"{key} = {str(path)!r} holds {given} beside other directories {others}; "
                        "expected train/ and test/ (or one of them), or only class directories")
    listed = {s: _class_images(root / s, f"{key} = {str(path)!r}: {s}/") for s in given}
    if len(given) == 1:
        classes, images = listed[given[0]]
        return Folder(classes, {"all": images})
    (train_classes, train), (test_classes, test) = listed["train"], listed["test"]
    if train_classes != test_classes:
        raise DataError(f"{key} = {str(path)!r}: train/ has classes {train_classes} and test/ "
                        f"{test_classes}; expected the same class directories in both")
    return Folder(train_classes, {"train": train, "test": test})


def fingerprint(listed: Folder) -> str:
    """A short hash of every image's path, size and modification time: a rule's param, so
    that adding, removing, renaming or rewriting an image reruns the decoding."""
    digest = hashlib.sha256()
    for split, images in sorted(listed.splits.items()):
        for image, label in images:
            stat = os.stat(image)
            digest.update(f"{split}|{label}|{image}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _header(path: str | os.PathLike, key: str):
    """(shapes, dtypes, metadata, an open reader) of a safetensors file, read torch-free."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise DataError(f"{key} = {str(path)!r}: no such file; expected a safetensors file "
                        f"holding {TENSOR_KEYS[:2]} (and optionally {TENSOR_KEYS[2:]})")
    try:
        reader = safe_open(str(path), framework="np")
        shapes = {k: tuple(reader.get_slice(k).get_shape()) for k in reader.keys()}
        dtypes = {k: reader.get_slice(k).get_dtype() for k in reader.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"{key} = {str(path)!r}: not a readable safetensors file ({err})") from err
    return shapes, dtypes, reader.metadata() or {}, reader


def tensors_file(path: str | os.PathLike, key: str = "dataset.path") -> TensorsFile:
    """Check a tensors file's keys, shapes, dtypes and labels (not its pixels: the decoding
    step does, lesion.usersplits) and say what it holds."""
    shapes, dtypes, meta, reader = _header(path, key)
    where = f"{key} = {str(path)!r}"
    missing = [k for k in TENSOR_KEYS[:2] if k not in shapes]
    if missing:
        raise DataError(f"{where} holds tensors {sorted(shapes)}, no {missing[0]!r}; expected "
                        f"{list(TENSOR_KEYS[:2])} (and optionally {list(TENSOR_KEYS[2:])})")
    unknown = sorted(set(shapes) - set(TENSOR_KEYS))
    if unknown:
        raise DataError(f"{where} holds tensors {unknown}, which lesion does not read; expected "
                        f"only {list(TENSOR_KEYS)}")
    if ("train_images" in shapes) != ("train_labels" in shapes):
        half = "train_images" if "train_images" in shapes else "train_labels"
        raise DataError(f"{where} holds {half!r} alone; expected both train_images and "
                        "train_labels (a train split), or neither (the file is split)")
    prefixes = {"train": "train_", "test": ""} if "train_images" in shapes else {"all": ""}
    image_shapes = set()
    for prefix in prefixes.values():
        images, labels = f"{prefix}images", f"{prefix}labels"
        if dtypes[images] not in (*_FLOATS, "U8"):
            raise DataError(f"{where}: {images!r} is {dtypes[images]}; expected float (values in "
                            "[0, 1]) or uint8 (0..255)")
        if len(shapes[images]) not in (3, 4) or 0 in shapes[images]:
            raise DataError(f"{where}: {images!r} has shape {list(shapes[images])}; expected "
                            "(N, C, H, W) or (N, H, W), none of them 0")
        if dtypes[labels] not in _INTEGERS or len(shapes[labels]) != 1:
            raise DataError(f"{where}: {labels!r} is {dtypes[labels]} of shape "
                            f"{list(shapes[labels])}; expected integers (int64) of shape (N,)")
        if shapes[labels][0] != shapes[images][0]:
            raise DataError(f"{where}: {shapes[images][0]} {images} but {shapes[labels][0]} "
                            f"{labels}; expected one label per image")
        image_shapes.add(shapes[images][1:] if len(shapes[images]) == 4 else (1, *shapes[images][1:]))
    if len(image_shapes) != 1:
        raise DataError(f"{where}: train_images and images differ in shape "
                        f"{sorted(map(list, image_shapes))}; expected one image shape")
    labels = {split: reader.get_tensor(f"{prefix}labels").astype("int64").tolist()
              for split, prefix in prefixes.items()}
    num_classes = _class_count(labels, meta.get("num_classes"), where)
    return TensorsFile(num_classes, image_shapes.pop(), labels)


def _class_count(labels: dict[str, list[int]], declared: str | None, where: str) -> int:
    """The file's class count (its `num_classes` metadata, else the largest label + 1),
    every label a class index and every class present in the split a network trains on."""
    every = [y for split in labels.values() for y in split]
    if declared is not None:
        if not declared.strip().isdigit():
            raise DataError(f"{where}: metadata num_classes = {declared!r}; expected a whole number")
        count = int(declared)
    elif "train" in labels and max(labels["train"]) != max(labels["test"]):
        raise DataError(f"{where}: train_labels hold {max(labels['train']) + 1} classes "
                        f"(0..{max(labels['train'])}) and labels {max(labels['test']) + 1} "
                        f"(0..{max(labels['test'])}); expected the same classes in both (or the "
                        "metadata entry num_classes, when a split lacks some)")
    else:
        count = max(every) + 1
    wrong = sorted({y for y in every if not 0 <= y < count})
    if wrong:
        raise DataError(f"{where}: labels {wrong[:5]} are not class indices; expected 0..{count - 1} "
                        f"({count} classes{', its num_classes metadata' if declared else ''})")
    if count < 2:
        raise DataError(f"{where}: {count} class; expected at least 2")
    trained = "train" if "train" in labels else "all"
    empty = sorted(set(range(count)) - set(labels[trained]))
    if empty:
        name = "train_labels" if trained == "train" else "labels"
        raise DataError(f"{where}: classes {empty[:5]} have no images in {name}; expected at "
                        f"least one image of each of the {count} classes")
    return count


def check_splittable(labels: list[int], test_fraction: float, what: str) -> None:
    """Refuse what scikit-learn's stratified split cannot do (train_test_split with
    `stratify`: test share rounded up), with the keys that change it."""
    counts = {y: labels.count(y) for y in set(labels)}
    n, classes = len(labels), len(counts)
    n_test = math.ceil(test_fraction * n)
    smallest = min(counts, key=lambda y: (counts[y], y))
    if counts[smallest] < 2:
        raise DataError(f"{what}: class {smallest} has {counts[smallest]} image; expected at least "
                        "2 per class to split it into train and test (or give a train split)")
    if n_test < classes or n - n_test < classes:
        raise DataError(f"{what}: dataset.test_fraction = {test_fraction} of {n} images gives "
                        f"{n_test} test and {n - n_test} train images for {classes} classes; "
                        "expected at least one image of each class on each side")
