"""The predict step: chunked prefix caching gives the same table as one chunk."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from lesion import data, evaluate, models, predict, sweep


@pytest.fixture(scope="module")
def study(tmp_path_factory, cnn):
    root = tmp_path_factory.mktemp("predict")
    data.export("digits", root / "raw.safetensors")
    data.make_tensors("digits", root / "raw.safetensors", root / "train.safetensors",
                      root / "test.safetensors", test_fraction=0.25, seed=0)
    models.save_weights(cnn, root / "weights.safetensors")
    for perturbation in ("gaussian", "node_knockout"):
        sweep.write_variants("digits", str(root / "weights.safetensors"), "conv2", perturbation,
                             levels=[0.3, 0.8], draws=3, study_seed=0,
                             out=str(root / f"{perturbation}.parquet"))
    return root


def test_chunk_size_is_a_multiple_of_the_batch_within_the_budget(cnn, digits):
    prefix, _, _ = models.split(cnn, "conv2")
    per_image = 16 * 8 * 8 * 4  # conv2's input: 16 channels of 8x8 float32
    cpu = torch.device("cpu")
    assert evaluate.images_per_chunk(prefix, digits[0], 1e9, 32, cpu) == len(digits[0])
    assert evaluate.images_per_chunk(prefix, digits[0], 70 * per_image, 32, cpu) == 64
    assert evaluate.images_per_chunk(prefix, digits[0], 1, 32, cpu) == 32  # one batch at least


@pytest.mark.parametrize("perturbation", ["gaussian", "node_knockout"])
def test_chunked_prefix_cache_gives_the_same_predictions(study, perturbation):
    tables = {}
    for name, cache_gb in (("whole", 4.0), ("chunked", 100 * 16 * 8 * 8 * 4 / 2**30)):
        out = study / f"{perturbation}-{name}.parquet"
        predict.predict_sweep("digits", study / "weights.safetensors", study / "test.safetensors",
                              study / f"{perturbation}.parquet", out, device="cpu",
                              batch_size=32, variants_per_pass=4, cache_gb=cache_gb,
                              precision="ieee")
        tables[name] = pq.read_table(out)
    assert len(tables["whole"]) == 6 * 450
    assert tables["chunked"].equals(tables["whole"])
