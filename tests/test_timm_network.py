"""A timm architecture from its random initialisation through the whole DAG:
config/examples/timm_network.yaml (a vision transformer shrunk to 8x8 digits) built from its
source, trained by the DAG, its layers read from its graph, and every study that takes a
network of one's own run on it: sweeps (crash faults too), fault bounds, adversarial
examples and training, synaptic filtering.

The reference is the network built by hand with timm and the weights file read with
safetensors (no lesion code), run on the study's test split.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from lesion import data
from test_workflow import NOTHING_TO_BE_DONE, REPO, snakemake, study_copy

pytestmark = pytest.mark.workflow
timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install -e '.[timm]')")

EXAMPLE = yaml.safe_load((REPO / "config/examples/timm_network.yaml").read_text())
LAYERS = ["patch_embed.proj", "blocks.1.attn.qkv", "blocks.1.mlp.fc2", "head"]
OPERATORS = ["synapse_knockout", "crash"]
# The example as it ships, every study, smaller: four of its layers, two operators at one
# level, one filter, a few images and repetitions, one seed per training regime (the suite's time)
SMALL = {**EXAMPLE, "models": {"vit": {**EXAMPLE["models"]["vit"], "layers": LAYERS}},
         "perturbations": {**{op: {"levels": [0.5], "draws": 2} for op in OPERATORS},
                           "testsets": ["fgsm"]},
         "faults": {**EXAMPLE["faults"], "levels": [0.2], "repetitions": 4, "inputs": 10},
         "adversarial": {**EXAMPLE["adversarial"], "images": 10,  # one adversarially trained vit
                         "training": {**EXAMPLE["adversarial"]["training"], "seeds": 1}},
         "filtering": {**EXAMPLE["filtering"], "filters": ["lowpass"],
                       "retraining": {**EXAMPLE["filtering"]["retraining"], "epochs": 1}}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("timm_network")
    study_copy(root, SMALL)
    snakemake(root, timeout=600)
    return root


def test_the_vit_is_trained_from_its_source_and_its_layers_are_in_forward_order(study):
    where = study / "results/timm_network/digits/vit"
    layers = pd.read_parquet(where / "layers.parquet")["name"].tolist()
    expected = ["patch_embed.proj"] + [f"blocks.{b}.{m}" for b in range(2) for m in
                                       ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")] + ["head"]
    assert layers == expected
    from safetensors.torch import load_file

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, in_chans=1,
                            **EXAMPLE["models"]["vit"]["kwargs"])
    net.load_state_dict(load_file(where / "weights.safetensors"))
    images, labels = data.load_split(study / "results/timm_network/digits/tensors/test.safetensors")
    with torch.no_grad():
        expected_top1 = (net.eval()(images).argmax(1) == labels).sum().item() / len(labels)
    metrics = pd.read_parquet(where / "metrics.parquet")
    clean = metrics.query("perturbation == 'none' and metric == 'top1' and testset == 'clean'")["value"]
    assert clean.tolist() == [pytest.approx(expected_top1, abs=1e-12)] and expected_top1 > 0.7
    swept = metrics.query("perturbation != 'none' and metric == 'top1'")
    assert sorted(swept["layer"].unique()) == sorted(LAYERS)
    assert sorted(swept["perturbation"].unique()) == sorted(OPERATORS)
    assert len(swept) == 2 * 4 * 2 * 2  # operators x layers x draws at one level x test sets
    clean_set = swept.query("testset == 'clean'")
    assert clean_set["value"].mean() < expected_top1 - 0.05  # half the synapses or neurons gone


def test_every_study_that_takes_a_network_of_ones_own_ran_on_it(study):
    """Faults, adversarial and filtering tables name the brought network's module paths."""
    results = study / "results/timm_network/digits"
    bounds = pd.read_parquet(results / "vit/faults/bounds.parquet")
    assert sorted(bounds["layer"].unique()) == sorted(LAYERS)
    scores = pd.read_parquet(results / "vit/filtering/scores.parquet")
    assert set(LAYERS) <= set(scores["layer"].unique())
    assert (results / "vit/filtering/retraining.parquet").exists()
    assert (results / "adversarial/fgsm/vit.safetensors").exists()
    assert (results / "adversarial/lbfgs/vit.safetensors").exists()


def test_a_finished_study_of_a_trained_timm_network_is_left_alone(study):
    assert NOTHING_TO_BE_DONE in snakemake(study, "-n")
