"""A dataset of one's own (issue 22, part 4): an ImageFolder directory or a safetensors file
decoded once into the train/test splits every step reads.

References are independent of lesion: the pixels the test wrote itself with numpy,
resized with PIL directly by the documented rule; labels from the sorted class names,
as torchvision's ImageFolder gives them; scikit-learn's stratified split called here.
Every bad input stops with one line naming the path and what was expected, in the config
check (lesion.config, before anything runs) and in the step, and writes nothing.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file
from sklearn.model_selection import train_test_split

from lesion import data, tensorfiles, usersplits
from lesion.config import ConfigError, check, load_schema
from lesion.userdata import DataError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
# Created in this order, so that sorting (ImageFolder's class order) is what labels them.
CLASSES = ("zebra", "ant", "mole")
SIZE = (6, 8)  # height, width: not square, so that the crop's two sides differ


def write_folder(root: Path, splits=("train", "test"), per_class=4, seed=0) -> dict[str, np.ndarray]:
    """PNGs of random pixels and mixed sizes (one exactly SIZE): {file: pixels written}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split in splits:
        for name in CLASSES:
            where = root / split / name if split else root / name
            where.mkdir(parents=True)
            for i in range(per_class):
                shape = SIZE if i == 0 else tuple(rng.integers(5, 15, 2))
                pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(where / f"{i:02d}.png")
                written[str(where / f"{i:02d}.png")] = pixels
    return written


def by_hand(pixels: np.ndarray, size=SIZE, mode="RGB") -> np.ndarray:
    """The documented rule, with PIL and numpy: scale by max(h/H, w/W) (each side rounded,
    at least the target's), bilinear, then keep the centre (odd pixel off bottom/right)."""
    img = Image.fromarray(pixels).convert(mode)
    h, w = size
    s = max(h / img.height, w / img.width)
    new_w, new_h = max(w, round(img.width * s)), max(h, round(img.height * s))
    out = np.asarray(img.resize((new_w, new_h), Image.BILINEAR))
    top, left = (new_h - h) // 2, (new_w - w) // 2
    out = out[top:top + h, left:left + w]
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def make(tmp_path, source, path, **options):
    out = tmp_path / "out"
    usersplits.write("mine", source, path, out / "train.safetensors", out / "test.safetensors",
                     **{"test_fraction": 0.25, "seed": 0, **options})
    return (data.load_split(out / "train.safetensors", "mine"),
            data.load_split(out / "test.safetensors", "mine"), out)


def test_a_folder_is_decoded_into_its_splits_labelled_by_sorted_class_name(tmp_path):
    written = write_folder(tmp_path / "photos")
    train, test, out = make(tmp_path, "folder", tmp_path / "photos", size=SIZE, channels=3)
    for split, (images, labels) in (("train", train), ("test", test)):
        files = sorted(f for f in written if f"/{split}/" in f)  # sorted class, then file names
        expected_labels = [sorted(CLASSES).index(Path(f).parent.name) for f in files]
        assert labels.tolist() == expected_labels == [0] * 4 + [1] * 4 + [2] * 4
        assert images.shape == (12, 3, *SIZE) and images.dtype == torch.float32
        expected = np.stack([by_hand(written[f]) for f in files]).astype(np.float32) / 255
        assert torch.equal(images, torch.from_numpy(expected))
        # an image of exactly SIZE is stored as written
        first = files.index(next(f for f in files if f.endswith("00.png")))
        assert torch.equal(images[first] * 255, torch.from_numpy(
            written[files[first]].transpose(2, 0, 1).astype(np.float32)))
    spec = data.get("mine", split=out / "test.safetensors")
    assert (spec.num_classes, spec.input_shape, spec.classes) == (3, (3, *SIZE), ("ant", "mole", "zebra"))
    assert tensorfiles.load_tensors(out / "train.safetensors")["images"].dtype == torch.uint8  # a cache


def test_a_folder_in_grey_is_converted_as_pil_converts_it(tmp_path):
    written = write_folder(tmp_path / "photos")
    train, _, _ = make(tmp_path, "folder", tmp_path / "photos", size=(5, 5), channels=1)
    files = sorted(f for f in written if "/train/" in f)
    expected = np.stack([by_hand(written[f], (5, 5), "L") for f in files]).astype(np.float32) / 255
    assert train[0].shape == (12, 1, 5, 5)
    assert torch.equal(train[0], torch.from_numpy(expected))


@pytest.mark.parametrize("layout", ["test", "", "train"])
def test_a_folder_without_both_splits_is_split_stratified_and_seeded(tmp_path, layout):
    written = write_folder(tmp_path / "photos", splits=(layout,), per_class=8)
    train, test, out = make(tmp_path, "folder", tmp_path / "photos", size=SIZE, channels=3,
                            test_fraction=0.25, seed=3)
    files = sorted(written)
    labels = np.array([sorted(CLASSES).index(Path(f).parent.name) for f in files])
    expected_train, expected_test = train_test_split(
        np.arange(len(files)), test_size=0.25, stratify=labels, random_state=3)
    for (images, got), idx, split in ((train, expected_train, "train"), (test, expected_test, "test")):
        idx = np.sort(idx)
        assert tensorfiles.load_tensors(out / f"{split}.safetensors")["index"].tolist() == idx.tolist()
        assert got.tolist() == labels[idx].tolist()
        expected = np.stack([by_hand(written[files[i]]) for i in idx]).astype(np.float32) / 255
        assert torch.equal(images, torch.from_numpy(expected))
    assert sorted(np.bincount(test[1].numpy())) == [2, 2, 2]  # 6 of 24, 2 per class
    assert tensorfiles.load_metadata(out / "test.safetensors")["seed"] == 3


def tensors_file(path, *, dtype=np.float32, train=True, n=12, shape=(2, 3, 4), meta=None, **change):
    """A tensors file of random images and 3 balanced classes: {key: array written}."""
    rng = np.random.default_rng(1)

    def pixels(k):
        return (rng.integers(0, 256, (k, *shape), dtype=np.uint8) if dtype == np.uint8
                else rng.random((k, *shape)).astype(dtype))

    arrays = {"images": pixels(n), "labels": np.arange(n, dtype=np.int64) % 3}
    if train:
        arrays.update(train_images=pixels(2 * n), train_labels=np.arange(2 * n, dtype=np.int64) % 3)
    arrays.update(change)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    save_file(arrays, str(path), metadata=meta)
    return arrays


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_a_tensors_file_with_a_train_split_is_stored_as_it_is(tmp_path, dtype):
    written = tensors_file(tmp_path / "x.safetensors", dtype=dtype)
    train, test, out = make(tmp_path, "tensors", tmp_path / "x.safetensors")
    scale = 255.0 if dtype == np.uint8 else 1.0
    for (images, labels), prefix in ((train, "train_"), (test, "")):
        expected = torch.from_numpy((written[f"{prefix}images"] / scale).astype(np.float32)) \
            if dtype == np.uint8 else torch.from_numpy(written[f"{prefix}images"].astype(np.float32))
        assert images.dtype == torch.float32 and torch.equal(images, expected)
        assert labels.tolist() == written[f"{prefix}labels"].tolist()
    assert 0 <= float(train[0].min()) and float(train[0].max()) <= 1
    spec = data.get("mine", split=out / "train.safetensors")
    assert (spec.num_classes, spec.input_shape) == (3, (2, 3, 4))


def test_a_tensors_file_without_a_train_split_is_split_and_grey_images_get_a_channel(tmp_path):
    written = tensors_file(tmp_path / "x.safetensors", dtype=np.uint8, train=False, n=24,
                           shape=(5, 5), meta={"num_classes": "4"},
                           labels=np.arange(24, dtype=np.int64) % 4)
    train, test, out = make(tmp_path, "tensors", tmp_path / "x.safetensors", seed=7)
    expected_train, expected_test = train_test_split(
        np.arange(24), test_size=0.25, stratify=written["labels"], random_state=7)
    for (images, labels), idx in ((train, expected_train), (test, expected_test)):
        idx = np.sort(idx)
        assert images.shape == (len(idx), 1, 5, 5)
        assert torch.equal(images[:, 0] * 255, torch.from_numpy(written["images"][idx].astype(np.float32)))
        assert labels.tolist() == written["labels"][idx].tolist()
    spec = data.get("mine", split=out / "test.safetensors")
    assert (spec.num_classes, spec.input_shape) == (4, (1, 5, 5))


def test_the_declared_class_count_lets_a_test_split_lack_a_class(tmp_path):
    tensors_file(tmp_path / "x.safetensors", meta={"num_classes": "3"},
                 labels=np.array([0, 1] * 6, dtype=np.int64))
    _, test, out = make(tmp_path, "tensors", tmp_path / "x.safetensors")
    assert sorted(set(test[1].tolist())) == [0, 1]
    assert data.get("mine", split=out / "test.safetensors").num_classes == 3


# --- bad inputs -----------------------------------------------------------------

def one_class(root):
    write_folder(root)
    for split in ("train", "test"):
        for name in CLASSES[1:]:
            for f in (root / split / name).iterdir():
                f.unlink()
            (root / split / name).rmdir()


def empty_class(root):
    write_folder(root)
    for f in (root / "test" / "mole").iterdir():
        f.unlink()
    (root / "test" / "mole" / "notes.txt").write_text("not an image")


def other_classes(root):
    write_folder(root)
    (root / "test" / "mole").rename(root / "test" / "vole")


def tensors(**change):
    return lambda path: tensors_file(path, **change)


# case: (source, how the data is made, words of the message); every message names the path
BAD = {
    "a folder with one class": ("folder", one_class, ["1 class directories ['zebra']",
                                                      "expected at least 2"]),
    "a folder with an empty class": ("folder", empty_class, ["test/", "'mole' holds no images",
                                                             ".png"]),
    "train and test folders with other classes": (
        "folder", other_classes, ["train/ has classes ['ant', 'mole', 'zebra'] and test/ "
                                  "['ant', 'vole', 'zebra']", "the same class directories"]),
    "a folder that is not there": ("folder", lambda p: None, ["no such directory", "ImageFolder"]),
    "a file that is not there": ("tensors", lambda p: None, ["no such file", "'images', 'labels'"]),
    "a label beyond the declared classes": (
        "tensors", tensors(meta={"num_classes": "3"}, labels=np.array([0, 1, 3] * 4)),
        ["labels [3] are not class indices", "expected 0..2", "num_classes metadata"]),
    "a negative label": ("tensors", tensors(labels=np.array([0, 1, 2, -1] * 3)),
                         ["labels [-1] are not class indices", "expected 0..2"]),
    "train and test labels of other class counts": (
        "tensors", tensors(labels=np.array([0, 1, 2, 3] * 3)),
        ["train_labels hold 3 classes (0..2) and labels 4 (0..3)", "the same classes in both"]),
    "a class without training images": (
        "tensors", tensors(train_labels=np.array([0, 2] * 12)),
        ["classes [1] have no images in train_labels", "each of the 3 classes"]),
    "one class": ("tensors", tensors(train=False, labels=np.zeros(12, dtype=np.int64)),
                  ["1 class", "at least 2"]),
    "no labels": ("tensors", tensors(labels=None), ["no 'labels'", "['images', 'labels']"]),
    "a train split without its labels": ("tensors", tensors(train_labels=None),
                                         ["'train_images' alone", "both train_images and train_labels"]),
    "a misspelt key": ("tensors", tensors(train_image=np.zeros((1, 2, 2), np.float32)),
                       ["['train_image']", "which lesion does not read"]),
    "fewer labels than images": ("tensors", tensors(labels=np.arange(11) % 3),
                                 ["12 images but 11 labels", "one label per image"]),
    "images of two shapes": ("tensors", tensors(train_images=np.zeros((24, 2, 3, 5), np.float32)),
                             ["differ in shape", "one image shape"]),
    "labels that are floats": ("tensors", tensors(labels=np.zeros(12, np.float32)),
                               ["'labels' is F32", "integers (int64)"]),
    "too few images to split": ("tensors", tensors(train=False, n=4),
                                ["class 1 has 1 image", "at least 2 per class"]),
}
# Found only when the pixels are read: by the step, not by the config check
PIXELS = {
    "float images above 1": ("tensors", tensors(images=np.full((12, 2, 3, 4), 1.5, np.float32)),
                             ["'images' holds values in [1.5, 1.5]", "floats in [0, 1]"]),
    "float images with NaN": ("tensors", tensors(images=np.full((12, 2, 3, 4), np.nan, np.float32)),
                              ["NaN", "floats in [0, 1]"]),
    "a file that is no image": ("folder", lambda p: (write_folder(p), (p / "test" / "ant" / "00.png")
                                                     .write_text("not a PNG")),
                                ["00.png: not a readable image"]),
}


def bad_data(tmp_path, case, cases):
    source, build, words = cases[case]
    path = tmp_path / ("photos" if source == "folder" else "x.safetensors")
    build(path)
    return source, path, words


@pytest.mark.parametrize("case", [*BAD, *PIXELS])
def test_bad_data_stops_the_step_with_one_line_and_nothing_written(tmp_path, case):
    source, path, words = bad_data(tmp_path, case, {**BAD, **PIXELS})
    with pytest.raises(DataError) as err:
        make(tmp_path, source, path, size=SIZE, channels=3)
    message = str(err.value)
    assert "\n" not in message and str(path.name) in message
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case", BAD)
def test_bad_data_stops_the_config_check_before_anything_runs(tmp_path, case):
    source, path, words = bad_data(tmp_path, case, BAD)
    config = {"dataset": {"name": "mine", "source": source, "path": str(path),
                          **({"size": list(SIZE)} if source == "folder" else {})},
              "models": {"cnn": {}}, "perturbations": {"gaussian": {"levels": [0.1], "draws": 1}}}
    with pytest.raises(ConfigError) as err:
        check(copy.deepcopy(config), SCHEMA)
    message = str(err.value)
    assert "\n" not in message and f"dataset.path = {str(path)!r}" in message
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_the_step_on_the_command_line_says_one_line_and_writes_nothing(tmp_path):
    one_class(tmp_path / "photos")
    proc = subprocess.run(
        [sys.executable, "-m", "lesion", "data", "user-tensors", "--dataset", "mine", "--source",
         "folder", "--path", str(tmp_path / "photos"), "--train-out", str(tmp_path / "out/a"),
         "--test-out", str(tmp_path / "out/b"), "--test-fraction", "0.25", "--seed", "0",
         "--size", "8,8"], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    echo, *said = proc.stderr.splitlines()  # the command first (lesion/__main__.py), then one line
    assert echo.startswith("$ python -m lesion data user-tensors --dataset mine ")
    errors = [line for line in said if line.strip()]
    assert len(errors) == 1 and "--path = " in errors[0] and "expected at least 2" in errors[0]
    assert not (tmp_path / "out").exists()


def test_a_dataset_not_registered_needs_a_split_of_its_own(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'mine' is unknown; expected one of .*'digits'"):
        data.get("mine")
    tensors_file(tmp_path / "x.safetensors")
    _, _, out = make(tmp_path, "tensors", tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"not a split of dataset 'other'.*data user-tensors"):
        data.get("other", split=out / "test.safetensors")
    with pytest.raises(ValueError, match=r"a split of dataset 'mine'; expected one of 'other'"):
        data.load_split(out / "test.safetensors", "other")
    # a registered dataset is the registry's, whatever the split
    assert data.get("digits", split=out / "test.safetensors") is data.DATASETS["digits"]
