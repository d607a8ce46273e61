"""A network of one's own through the whole DAG: config/examples/own_network.yaml (a residual
CNN from a Python file, weights from a DDP-style checkpoint) imported, its layers read from
its graph, every layer swept and crashed (the fault study too), on the digits split.

The reference is the user's own module loaded by hand with plain PyTorch (importlib,
torch.load, the prefix stripped) and run on the study's test split.
"""

from __future__ import annotations

import importlib.util
import shutil

import pandas as pd
import pytest
import torch
import yaml

from lesion import data
from test_workflow import NOTHING_TO_BE_DONE, REPO, snakemake, study_copy

pytestmark = pytest.mark.workflow

# The example as it ships, with two operators at one level (the suite's time)
EXAMPLE = yaml.safe_load((REPO / "config/examples/own_network.yaml").read_text())
OPERATORS = ["synapse_knockout", "node_knockout", "crash"]
SMALL = {**EXAMPLE, "perturbations": {op: {"levels": [0.5], "draws": 2} for op in OPERATORS},
         "faults": {**EXAMPLE["faults"], "levels": [0.2], "repetitions": 4, "inputs": 20},
         # the adversarial study on the network as it was imported (nothing trained it)
         "adversarial": {"models": ["residual"], "images": 10, "attacks": {"fgsm": {"eps": 0.1}}}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_network")
    study_copy(root, SMALL)
    shutil.copytree(REPO / "config" / "examples", root / "config" / "examples")
    out = snakemake(root, timeout=600)
    return root, out


def by_hand(root):
    """The user's network as they would load it themselves."""
    spec = importlib.util.spec_from_file_location(
        "residual_by_hand", root / "config/examples/own_network/residual.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.build(width=8)
    checkpoint = torch.load(root / "config/examples/own_network/residual.pt", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()})
    return net.eval()


def test_the_brought_network_is_imported_as_it_is_and_swept_layer_by_layer(study):
    root, _ = study
    where = root / "results/own_network/digits/residual"
    layers = pd.read_parquet(where / "layers.parquet")
    assert layers["name"].tolist() == ["stem", "block.conv1", "block.conv2", "head"]
    assert layers.set_index("name")["norm"].to_dict()["block.conv2"] == "block.bn2"
    images, labels = data.load_split(root / "results/own_network/digits/tensors/test.safetensors")
    with torch.no_grad():
        expected = (by_hand(root)(images).argmax(1) == labels).sum().item() / len(labels)
    metrics = pd.read_parquet(where / "metrics.parquet")
    clean = metrics.query("perturbation == 'none' and metric == 'top1'")["value"]
    assert clean.tolist() == [pytest.approx(expected, abs=1e-12)] and expected > 0.9
    swept = metrics.query("perturbation != 'none' and metric == 'top1'")
    assert sorted(swept["layer"].unique()) == sorted(layers["name"])
    assert sorted(swept["perturbation"].unique()) == sorted(OPERATORS)
    assert len(swept) == 3 * 4 * 2  # operators x layers x draws at one level
    assert swept["value"].mean() < expected - 0.05  # half the weights or units gone hurts


def test_the_fault_study_crashes_every_layer_of_the_brought_network(study):
    """Crash errors and bounds on every layer, inside the residual block too; b1 and b2
    need a dense chain after the neurons, which only the last layer (the logits) has."""
    root, _ = study
    where = root / "results/own_network/digits/residual/faults"
    bounds = pd.read_parquet(where / "bounds.parquet")
    assert sorted(bounds["layer"].unique()) == ["block.conv1", "block.conv2", "head", "stem"]
    present = bounds.groupby("layer")["bound"].agg(set).to_dict()
    assert present["head"] >= {"b1", "b2", "b3", "b4"}
    assert present["block.conv2"] == {"b3", "b4"}
    errors = pd.read_parquet(where / "errors.parquet").query("statistic == 'norm_l2'")
    assert (errors["value"] > 0).all() and len(errors) == 4  # layers at one p


def test_a_finished_study_of_a_brought_network_is_left_alone(study):
    root, _ = study
    assert NOTHING_TO_BE_DONE in snakemake(root, "-n")


def test_the_adversarial_study_attacks_the_imported_network_and_leaves_its_training_errors_empty(study):
    """No training curve exists for a network imported with its weights: Table 1's train and
    test errors are empty, its attack's numbers are there (the set's own tensors)."""
    from safetensors.torch import load_file

    root, _ = study
    where = root / "results/own_network/digits/adversarial"
    [row] = pd.read_parquet(where / "distortion.parquet").to_dict("records")
    assert row["model"] == "residual" and row["attack"] == "fgsm"
    assert pd.isna(row["train_error"]) and pd.isna(row["test_error"])
    found = load_file(where / "fgsm" / "residual.safetensors")
    assert row["n_images"] == len(found["success"]) == 10
    assert row["success_rate"] == pytest.approx(found["success"].float().mean().item())
