"""Fine-tuning: start from weights, freeze layers, masked updates, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lesion import data, models, networks, tensorfiles, train

REPO = Path(__file__).resolve().parents[1]

SETTINGS = {"batch_size": 64, "learning_rate": 1e-2, "seed": 0, "device": "cpu",
            "precision": "ieee"}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    data.export("digits", root / "raw.safetensors")
    data.make_tensors("digits", root / "raw.safetensors", root / "train.safetensors",
                      root / "test.safetensors", test_fraction=0.25, seed=0)
    torch.manual_seed(5)
    models.save_weights(models.build("mlp", num_classes=10, input_shape=(1, 8, 8)),
                        root / "start.safetensors")
    return root


def run(split, name, *, epochs=1, weight_decay=0.0, init=None, freeze=(), masks=None,
        checkpoints=None):
    out = split / f"{name}.safetensors"
    train.train(train.Network("mlp", init=init, freeze=freeze), "digits",
                split / "train.safetensors", split / "test.safetensors", out,
                split / f"{name}.parquet",
                train.Settings(epochs=epochs, weight_decay=weight_decay, **SETTINGS),
                hooks=[train.Hook(masks=masks)] if masks is not None else [],
                checkpoints=checkpoints)
    return tensorfiles.load_tensors(out)


@pytest.mark.parametrize("trained", [["head.weight"], ["head.weight", "block.bn2.weight"]])
def test_masked_training_keeps_the_running_statistics_of_a_norm_it_keeps(split, trained):
    """The residual example's BatchNorm (block.bn2) keeps its running statistics bit for
    bit when the masks keep its parameters, and updates them when they select one."""
    source = networks.Source.parse("python:residual:build",
                                   path=str(REPO / "config/examples/own_network"))
    torch.manual_seed(5)
    start = models.build_source(source, num_classes=10, input_shape=(1, 8, 8), name="residual")
    models.save_weights(start, split / "residual-start.safetensors")
    masks = {name: torch.full(p.shape, name in trained) for name, p in start.named_parameters()}
    out = split / "residual-masked.safetensors"
    train.train(train.Network("residual", source=source, init=split / "residual-start.safetensors"),
                "digits", split / "train.safetensors", split / "test.safetensors", out,
                split / "residual-masked.parquet", train.Settings(epochs=1, weight_decay=0.0, **SETTINGS),
                hooks=[train.Hook(masks=masks)])
    got, before = tensorfiles.load_tensors(out), start.state_dict()
    statistics = ["block.bn2.running_mean", "block.bn2.running_var",
                  "block.bn2.num_batches_tracked"]
    unchanged = [torch.equal(got[name], before[name]) for name in statistics]
    assert unchanged == [len(trained) == 1] * 3
    assert not torch.equal(got["head.weight"], before["head.weight"])
    assert torch.equal(got["stem.weight"], before["stem.weight"])


def test_masked_entries_stay_bit_identical_with_weight_decay(split):
    start = tensorfiles.load_tensors(split / "start.safetensors")
    mask = torch.rand(start["1.weight"].shape, generator=torch.Generator().manual_seed(0)) < 0.5
    out = run(split, "masked", weight_decay=0.1, init=split / "start.safetensors",
              masks={"1.weight": mask, "1.bias": torch.zeros(100, dtype=torch.bool)})
    kept = start["1.weight"].view(torch.int32)[~mask]
    assert torch.equal(out["1.weight"].view(torch.int32)[~mask], kept)
    assert torch.equal(out["1.bias"], start["1.bias"])
    assert (out["1.weight"][mask] != start["1.weight"][mask]).float().mean() > 0.9
    assert not torch.equal(out["3.weight"], start["3.weight"])  # unmasked: trained


def test_frozen_layers_and_init(split):
    start = tensorfiles.load_tensors(split / "start.safetensors")
    out = run(split, "frozen", init=split / "start.safetensors", freeze=["fc1", "fc3"])
    for name in ("1.weight", "1.bias", "5.weight", "5.bias"):  # fc1 and fc3
        assert torch.equal(out[name], start[name]), name
    assert not torch.equal(out["3.weight"], start["3.weight"])  # fc2 trains
    meta = tensorfiles.load_metadata(split / "frozen.safetensors")
    assert meta["freeze"] == ["fc1", "fc3"] and meta["init"].endswith("start.safetensors")


def test_init_must_hold_the_same_model(split):
    torch.manual_seed(0)
    models.save_weights(models.build("cnn", num_classes=10, input_shape=(1, 8, 8)),
                        split / "cnn.safetensors")
    with pytest.raises(ValueError, match=r"holds cnn weights; expected weights of architecture mlp"):
        run(split, "wrong", init=split / "cnn.safetensors")


def test_checkpoints_are_the_weights_after_their_epoch(split):
    final = run(split, "three", epochs=3, checkpoints={1: split / "e1.safetensors",
                                                       3: split / "e3.safetensors"})
    one = run(split, "one", epochs=1)
    assert all(torch.equal(tensorfiles.load_tensors(split / "e3.safetensors")[k], final[k]) for k in final)
    assert all(torch.equal(tensorfiles.load_tensors(split / "e1.safetensors")[k], one[k]) for k in one)
    assert not torch.equal(one["1.weight"], final["1.weight"])
    assert tensorfiles.load_metadata(split / "e1.safetensors")["epoch"] == 1


@pytest.mark.parametrize(("options", "words"), [
    ({"checkpoints": {4: "x"}}, r"checkpoint epoch 4 is out of range; expected an epoch in 1\.\.1"),
    ({"masks": {"fc1.weight": torch.ones(3, dtype=torch.bool)}},
     r"masks name 'fc1.weight', which is not a parameter of the model; expected some of"),
    ({"masks": {"1.weight": torch.ones(3, dtype=torch.bool)}},
     r"masks\['1.weight'\] is torch.bool of shape \(3,\); expected torch.bool of shape \(100, 64\)"),
])
def test_bad_fine_tuning_options_are_refused_before_training(split, options, words):
    with pytest.raises(ValueError, match=words):
        run(split, "bad", **options)
    assert not (split / "bad.safetensors").exists()


def test_masks_from_a_safetensors_file_on_the_command_line(split):
    from lesion.cli import main

    start = tensorfiles.load_tensors(split / "start.safetensors")
    tensorfiles.save_tensors({"5.weight": torch.zeros(10, 100, dtype=torch.bool)},
                    split / "masks.safetensors", {})
    assert main(["model", "train", "--model", "mlp", "--dataset", "digits",
                 "--train", str(split / "train.safetensors"),
                 "--test", str(split / "test.safetensors"),
                 "--weights-out", str(split / "file-masked.safetensors"),
                 "--curve-out", str(split / "file-masked.parquet"), "--epochs", "1",
                 "--batch-size", "64", "--learning-rate", "0.01", "--weight-decay", "0",
                 "--seed", "0", "--device", "cpu", "--threads", "1", "--precision", "ieee",
                 "--init", str(split / "start.safetensors"),
                 "--masks", str(split / "masks.safetensors")]) == 0
    out = tensorfiles.load_tensors(split / "file-masked.safetensors")
    assert torch.equal(out["5.weight"], start["5.weight"])
    assert not torch.equal(out["3.weight"], start["3.weight"])


def test_training_switches_on_deterministic_kernels(split):
    """What torch.use_deterministic_algorithms(True) would set, set without it."""
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(False)
    try:
        run(split, "deterministic")
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # the CPU: errors, not warnings
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
