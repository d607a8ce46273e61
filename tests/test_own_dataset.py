"""A dataset of one's own through the whole DAG: a folder of 8x8 PNGs (3 classes, no train/
folder) decoded by rule user_tensors, split, an mlp trained on it for one epoch and swept.

The references are the PNGs' own pixels (8x8 already, so the decoding keeps them as they
are), their class index from the sorted folder names, scikit-learn's stratified split
called here, and the trained network run by hand on those pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from lesion import data, models, tensorfiles
from test_datasets import CLASSES
from test_workflow import NOTHING_TO_BE_DONE, planned_jobs, snakemake, study_copy

pytestmark = pytest.mark.workflow


def config(path) -> dict:
    return {"seed": 0, "device": "cpu",
            "dataset": {"name": "shapes", "source": "folder", "path": str(path), "size": [8, 8]},
            "models": {"mlp": {"layers": ["fc1"]}},
            "train": {"epochs": 1},
            "perturbations": {"gaussian": {"levels": [0.5], "draws": 2}}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_dataset")
    images = tmp_path_factory.mktemp("images") / "shapes"
    written, rng = {}, np.random.default_rng(0)
    for name in CLASSES:  # 12 PNGs of 8x8 per class
        (images / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / name / f"{i:02d}.png")
            written[str(images / name / f"{i:02d}.png")] = pixels
    study_copy(root, config(images))
    snakemake(root, timeout=300)
    return root, images, written


def test_the_folder_is_decoded_split_trained_on_and_swept(study):
    root, _, written = study
    files = sorted(written)
    labels = np.array([sorted(CLASSES).index(f.split("/")[-2]) for f in files])
    train_idx, test_idx = train_test_split(np.arange(36), test_size=0.25, stratify=labels,
                                           random_state=0)
    where = root / "results" / "shapes"
    test_idx = np.sort(test_idx)
    images, got = data.load_split(where / "tensors" / "test.safetensors", "shapes")
    expected = np.stack([written[files[i]].transpose(2, 0, 1) for i in test_idx]) / 255
    assert torch.equal(images, torch.from_numpy(expected.astype(np.float32)))
    assert got.tolist() == labels[test_idx].tolist()
    assert len(data.load_split(where / "tensors" / "train.safetensors")[1]) == len(train_idx)

    net = models.load_weights(where / "mlp" / "weights.safetensors", num_classes=3,
                              input_shape=(3, 8, 8))
    with torch.no_grad():
        by_hand = (net(torch.from_numpy(expected.astype(np.float32))).argmax(1)
                   == torch.from_numpy(labels[test_idx])).double().mean().item()
    metrics = pd.read_parquet(where / "mlp" / "metrics.parquet")
    clean = metrics.query("perturbation == 'none' and metric == 'top1'")["value"].tolist()
    assert clean == [pytest.approx(by_hand, abs=1e-12)]
    swept = metrics.query("perturbation == 'gaussian' and metric == 'top1'")
    assert len(swept) == 2 and set(swept["layer"]) == {"fc1"}
    assert tensorfiles.load_metadata(where / "tensors" / "test.safetensors")["classes"] == sorted(CLASSES)


def test_a_finished_study_is_left_alone_and_a_new_image_redecodes_the_folder(study):
    root, images, written = study
    assert NOTHING_TO_BE_DONE in snakemake(root, "-n")
    extra = images / CLASSES[0] / "99.png"
    extra.write_bytes((images / CLASSES[0] / "00.png").read_bytes())
    try:
        rules = {rule for rule, _ in planned_jobs(root)}
    finally:
        extra.unlink()
    assert {"user_tensors", "train", "sweep"} <= rules
    assert NOTHING_TO_BE_DONE in snakemake(root, "-n")
