"""Your own network on your own images through the whole DAG: config/examples/own_data.yaml
(the residual CNN of config/examples/own_network/residual.py trained by the DAG on the
shipped folder of PNGs, normalising its own input), all four studies that take it.

The references are the PNGs read with PIL, scikit-learn's stratified split called here,
the user's module loaded by hand with plain PyTorch and the normalisation written out.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from sklearn.model_selection import train_test_split

from lesion import data, tensorfiles
from test_workflow import REPO, snakemake, study_copy

pytestmark = pytest.mark.workflow

EXAMPLE = yaml.safe_load((REPO / "config/examples/own_data.yaml").read_text())
GLYPHS = REPO / "config/examples/own_data/glyphs"
# The example as it ships, at fewer layers, levels, draws and filters (the suite's time)
SMALL = {**EXAMPLE, "models": {"residual": {**EXAMPLE["models"]["residual"],
                                             "layers": ["block.conv2", "head"]}},
         "perturbations": {"node_knockout": {"levels": [0.5], "draws": 2},
                           "crash": {"levels": [0.3], "draws": 2}, "testsets": ["fgsm"]},
         "faults": {**EXAMPLE["faults"], "levels": [0.2], "repetitions": 4, "inputs": 10},
         "adversarial": {**EXAMPLE["adversarial"], "images": 10,
                         "attacks": {"fgsm": {"eps": 0.1}}},
         "filtering": {**EXAMPLE["filtering"], "filters": ["lowpass"],
                       "retraining": {**EXAMPLE["filtering"]["retraining"], "epochs": 1}}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    study_copy(root, SMALL)
    shutil.copytree(REPO / "config" / "examples", root / "config" / "examples")
    snakemake(root, timeout=600)
    return root / "results" / "own_data" / "glyphs"


def by_hand(where):
    """The user's network as they would load it themselves, normalisation written out."""
    spec = importlib.util.spec_from_file_location(
        "residual_by_hand", REPO / "config/examples/own_network/residual.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.build(width=8, classes=3)
    net.load_state_dict(tensorfiles.load_tensors(where / "residual" / "weights.safetensors"))
    net.eval()
    return lambda x: net((x - 0.3) / 0.4)


def test_the_folder_is_split_and_the_trained_network_normalises_its_own_input(study):
    files = sorted(GLYPHS.glob("*/*.png"))
    labels = np.array([sorted(p.name for p in GLYPHS.iterdir()).index(f.parent.name)
                       for f in files])
    _, test_idx = train_test_split(np.arange(len(files)), test_size=0.25, stratify=labels,
                                   random_state=0)
    test_idx = np.sort(test_idx)
    pixels = np.stack([np.asarray(Image.open(files[i]))[None] for i in test_idx]) / 255
    images, got = data.load_split(study / "tensors" / "test.safetensors", "glyphs")
    assert torch.equal(images, torch.from_numpy(pixels.astype(np.float32)))
    assert got.tolist() == labels[test_idx].tolist()

    meta = tensorfiles.load_metadata(study / "residual" / "weights.safetensors")
    assert meta["input_normalize"] == {"mean": [0.3], "std": [0.4]}
    with torch.no_grad():
        top1 = (by_hand(study)(images).argmax(1) == got).double().mean().item()
    metrics = pd.read_parquet(study / "residual" / "metrics.parquet")
    clean = metrics.query("perturbation == 'none' and metric == 'top1' and testset == 'clean'")
    assert clean["value"].tolist() == [pytest.approx(top1, abs=1e-12)]
    assert top1 > 0.9  # zeros, ones and sevens: an easy task for a trained network
    swept = metrics.query("perturbation == 'node_knockout' and metric == 'top1'")
    assert set(swept["layer"]) == {"block.conv2", "head"}
    layers = pd.read_parquet(study / "residual" / "layers.parquet")
    assert layers["name"].tolist() == ["stem", "block.conv1", "block.conv2", "head"]


def test_the_attacks_keep_their_box_and_the_other_studies_ran(study):
    tensors = tensorfiles.load_tensors(study / "adversarial" / "fgsm" / "residual.safetensors")
    images, _ = data.load_split(study / "tensors" / "test.safetensors", "glyphs")
    adv = tensors["images"]
    clean = images[:len(adv)]  # the first images of the test split
    assert 0 <= adv.min() and adv.max() <= 1  # the [0, 1] box, not a normalised one
    assert (adv - clean).abs().max() <= 0.1 + 1e-6
    assert ((adv - clean).abs().amax((1, 2, 3)) > 0.09).float().mean() > 0.5  # eps steps taken
    for table in ("faults/bounds.parquet", "filtering/scores.parquet"):
        assert len(pd.read_parquet(next(study.rglob(table.split("/")[-1])))) > 0, table
