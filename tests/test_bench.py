"""`bench sweep`: runs on any model without its data, and says so when data is missing."""

from __future__ import annotations

import pytest
import torch

from lesion import files
from lesion.tools import bench


def test_synthetic_inputs_have_the_datasets_shape_and_are_seeded():
    images, labels = bench.synthetic_inputs("imagenet", 3)
    assert images.shape == (3, 3, 224, 224) and labels.shape == (3,)
    assert 0 <= float(images.min()) and float(images.max()) < 1 and int(labels.max()) < 1000
    again, _ = bench.synthetic_inputs("imagenet", 3)
    assert torch.equal(images, again)


def test_a_dataset_not_on_disk_is_a_clear_error_naming_the_synthetic_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(files.InputFileError, match=r"no test split at results/imagenet/.*--synthetic"):
        bench.sweep_speed(dataset="imagenet", model="alexnet", weights=None,
                          perturbation="gaussian", levels=[0.5], draws=1, device="cpu",
                          variants_per_pass=2)


def test_the_sweep_benchmark_times_every_column_on_synthetic_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = bench.sweep_speed(dataset="digits", model="mlp", weights=None,
                             perturbation="gaussian", levels=[0.5], draws=2, device="cpu",
                             variants_per_pass=2, layers=["fc2"], images=16, synthetic=True,
                             repeats=1)
    assert [r["layer"] for r in rows] == ["fc2", "total"]
    for column in ("draw", "regen", "naive", "limit", "one", "stacked", "loop"):
        assert rows[0][column] > 0
    assert rows[0]["vs_limit"] == rows[0]["stacked"] / rows[0]["limit"]
    assert rows[0]["draw_vs_eval"] == rows[0]["draw"] / rows[0]["stacked"]
