"""The predict step: chunked prefix caching gives the same table as one chunk."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from lesion import data, evaluate, files, kinds, models, operators, predict, sweeps, tensorfiles


@pytest.fixture(scope="module")
def study(tmp_path_factory, cnn):
    root = tmp_path_factory.mktemp("predict")
    data.export("digits", root / "raw.safetensors")
    data.make_tensors("digits", root / "raw.safetensors", root / "train.safetensors",
                      root / "test.safetensors", test_fraction=0.25, seed=0)
    models.save_weights(cnn, root / "weights.safetensors")
    for perturbation in ("gaussian", "node_knockout"):
        sweeps.write_variants("digits", str(root / "weights.safetensors"), "conv2", perturbation,
                             levels=[0.3, 0.8], draws=3, study_seed=0,
                             out=str(root / f"{perturbation}.parquet"))
    return root


def test_chunk_size_is_a_multiple_of_the_batch_within_the_budget(cnn, digits):
    prefix, _, _ = models.split(cnn, "conv2")
    per_image = 16 * 8 * 8 * 4  # conv2's input: 16 channels of 8x8 float32
    cpu = torch.device("cpu")
    assert evaluate.images_per_chunk(prefix, digits[0], 1e9, 32, cpu) == len(digits[0])
    assert evaluate.images_per_chunk(prefix, digits[0], 70 * per_image, 32, cpu) == 64
    assert evaluate.images_per_chunk(prefix, digits[0], 32 * per_image, 32, cpu) == 32
    with pytest.raises(ValueError, match=r"^layer conv2: the clean activations in front of it take "
                       r"0\.000122 GB for one batch of 32 images \(0\.00391 MB each\), more than "
                       r"evaluate\.cache_gb = 9\.3\d*e-07; expected a larger evaluate\.cache_gb or a "
                       r"smaller evaluate\.batch_size$"):
        evaluate.images_per_chunk(prefix, digits[0], 1000, 32, cpu, layer="layer conv2")


CHUNKED = 100 * 16 * 8 * 8 * 4 / 2**30  # conv2's input of 100 images: 3 passes of 450


@pytest.mark.parametrize("perturbation", ["gaussian", "node_knockout"])
def test_the_cache_bound_and_the_variants_per_pass_change_no_prediction(study, perturbation):
    """evaluate.cache_gb and evaluate.variants_per_pass tune speed only (the workflow passes
    them as resources, so changing them reruns nothing): the tables are equal. One variant
    per pass runs the plain layer instead of the stacked one, another kernel: the same
    predictions, the losses within float32 rounding (each row of it is checked against
    the whole network in test_references)."""
    tables = {}
    for name, cache_gb, per_pass in (("whole", 4.0, 4), ("chunked", CHUNKED, 4),
                                     ("two per pass", 4.0, 2), ("all in one pass", 4.0, 6),
                                     ("one per pass", 4.0, 1)):
        out = study / f"{perturbation}-{name}.parquet"
        predict.predict_sweep("digits", study / "weights.safetensors", study / "test.safetensors",
                              study / f"{perturbation}.parquet", out, device="cpu",
                              batch_size=32, variants_per_pass=per_pass, cache_gb=cache_gb,
                              precision="ieee")
        tables[name] = pq.read_table(out)
    whole = tables.pop("whole")
    assert len(whole) == 6 * 450
    plain = tables.pop("one per pass")
    for name, table in tables.items():
        assert table.equals(whole), name
    assert plain.drop_columns(["loss"]).equals(whole.drop_columns(["loss"]))


def _counting(monkeypatch, module, name):
    """Count the calls of `module.name` (still calling it)."""
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_chunked_predict_hashes_each_variant_once(study, monkeypatch):
    hashes = _counting(monkeypatch, tensorfiles, "tensors_sha256")
    draws = _counting(monkeypatch, operators, "apply")
    predict.predict_sweep("digits", study / "weights.safetensors", study / "test.safetensors",
                          study / "gaussian.parquet", study / "hashes.parquet", device="cpu",
                          batch_size=32, variants_per_pass=4, cache_gb=CHUNKED,
                          precision="ieee")
    assert len(hashes) == 6  # the table's rows, checked once each
    assert len(draws) == 6 * 5  # 450 images in passes of 96: each pass redraws


@pytest.mark.parametrize("perturbation", ["gaussian", "node_knockout", "crash"])
@pytest.mark.parametrize("cache_gb", [4.0, CHUNKED])
def test_the_sweep_step_draws_once_what_the_two_steps_write(study, monkeypatch, tmp_path,
                                                           perturbation, cache_gb):
    """run_sweep's tables equal the variants step's and the predict step's, on two test sets
    (the test split and the training split), with the prefix cache whole and chunked, for
    an operator on two layers (the predict step reads a table of both)."""
    weights, tests = study / "weights.safetensors", [study / "test.safetensors",
                                                    study / "train.safetensors"]
    sweeps.write_variants("digits", str(weights), ["conv2", "fc1"], perturbation,
                         levels=[0.3, 0.8], draws=3, study_seed=0,
                         out=str(tmp_path / "variants.parquet"))
    expected = []
    for i, test in enumerate(tests):
        predict.predict_sweep("digits", weights, test, tmp_path / "variants.parquet",
                              tmp_path / f"expected{i}.parquet", device="cpu", batch_size=32,
                              variants_per_pass=4, cache_gb=cache_gb, precision="ieee")
        expected.append(pq.read_table(tmp_path / f"expected{i}.parquet"))
    draws = _counting(monkeypatch, operators, "apply")
    hashes = _counting(monkeypatch, tensorfiles, "tensors_sha256")
    outs = [tmp_path / "got0.parquet", tmp_path / "got1.parquet"]
    predict.run_sweep("digits", weights, tests, outs, tmp_path / "got.parquet",
                      layers=["conv2", "fc1"], perturbation=perturbation, levels=[0.3, 0.8],
                      draws=3, study_seed=0, options={}, device="cpu", batch_size=32,
                      variants_per_pass=4, cache_gb=cache_gb, precision="ieee")
    assert pq.read_table(tmp_path / "got.parquet").equals(
        pq.read_table(tmp_path / "variants.parquet"))
    for out, table in zip(outs, expected, strict=True):
        assert pq.read_table(out).equals(table)
    if perturbation != "crash" and cache_gb == 4.0:  # one pass: each variant drawn once
        assert (len(draws), len(hashes)) == (12, 12)


def _plain(table: pa.Table) -> pa.Table:
    """A predictions table with its variant ids as strings, in one chunk: tables written
    apart (each with its own dictionary of ids) compare by value."""
    return table.set_column(0, "variant", pc.cast(table.column("variant"), pa.string())
                            ).combine_chunks()


@pytest.mark.parametrize("perturbation", ["node_knockout", "crash"])
def test_a_sweep_over_several_layers_is_the_single_layer_sweeps_concatenated(
        study, tmp_path, perturbation):
    """One sweep step over every layer writes, row for row and value for value, what one
    sweep step per layer writes (the per-layer jobs of the workflow before), concatenated
    in forward order: the same variants, seeds, sha256s and predictions on every test set.
    The layers are given out of order and as `all`; each is swept in forward order."""
    weights, tests = study / "weights.safetensors", [study / "test.safetensors",
                                                    study / "train.safetensors"]
    sweep_args = {"perturbation": perturbation, "levels": [0.3, 0.8], "draws": 2,
                  "study_seed": 5, "options": {}, "device": "cpu", "batch_size": 64,
                  "variants_per_pass": 3, "cache_gb": 4.0, "precision": "ieee"}
    layers = ["conv1", "conv2", "fc1", "fc2"]
    for name, given in (("listed", ["fc2", "conv2", "fc1", "conv1"]), ("all", "all"),
                        *((layer, [layer]) for layer in layers)):
        predict.run_sweep("digits", weights, tests,
                          [tmp_path / f"{name}-p{i}.parquet" for i in range(len(tests))],
                          tmp_path / f"{name}-v.parquet", layers=given, **sweep_args)

    def read(name, table):
        return pq.read_table(tmp_path / f"{name}-{table}.parquet")

    expected = {table: pa.concat_tables([read(layer, table) for layer in layers])
                for table in ("v", "p0", "p1")}
    assert len(expected["v"]) == len(layers) * 2 * 2
    assert expected["v"].column("layer").to_pylist() == [x for x in layers for _ in range(4)]
    cuts = {layer: json.loads(read(layer, "v").schema.metadata.get(b"cuts", b"{}"))
            for layer in layers}
    for name in ("listed", "all"):
        assert read(name, "v").equals(expected["v"])
        for table in ("p0", "p1"):
            assert _plain(read(name, table)).equals(_plain(expected[table])), (name, table)
        if perturbation != "crash":  # how each layer was cut, one entry per layer
            recorded = json.loads(read(name, "v").schema.metadata[b"cuts"])
            assert list(recorded) == layers
            assert recorded == {layer: cuts[layer][layer] for layer in layers}
            assert json.loads(read(name, "p0").schema.metadata[b"cuts"]) == recorded


def test_the_predict_step_keeps_the_rows_order_of_a_table_whose_layers_interleave(
        study, tmp_path):
    """A variants table written elsewhere may hold its layers' rows in any order: each
    layer is predicted once and the predictions follow the table's rows."""
    weights, test = study / "weights.safetensors", study / "test.safetensors"
    sweeps.write_variants("digits", str(weights), ["conv2", "fc1"], "gaussian", levels=[0.3],
                         draws=2, study_seed=0, out=str(tmp_path / "v.parquet"))
    table = pq.read_table(tmp_path / "v.parquet")
    order = [2, 0, 3, 1]  # fc1, conv2, fc1, conv2
    files.write_table(table.take(order), tmp_path / "mixed.parquet", kind=kinds.VARIANTS)
    options = {"device": "cpu", "batch_size": 64, "variants_per_pass": 4, "cache_gb": 4.0,
               "precision": "ieee"}
    for name in ("v", "mixed"):
        predict.predict_sweep("digits", weights, test, tmp_path / f"{name}.parquet",
                              tmp_path / f"{name}-p.parquet", **options)
    ids = table.column("variant").to_pylist()
    straight = _plain(pq.read_table(tmp_path / "v-p.parquet")).to_pandas()
    mixed = _plain(pq.read_table(tmp_path / "mixed-p.parquet")).to_pandas()
    assert mixed["variant"].unique().tolist() == [ids[i] for i in order]
    by_variant = straight.set_index(["variant", "image"])
    pd.testing.assert_frame_equal(mixed.set_index(["variant", "image"]),
                                  by_variant.loc[mixed.set_index(["variant", "image"]).index])


def test_passes_pack_the_test_sets_spans_within_the_cache():
    assert predict._passes([450, 100], 600) == [[(0, 0, 450), (1, 0, 100)]]  # one pass: one draw
    assert predict._passes([200, 20], 96) == [[(0, 0, 96)], [(0, 96, 192)],
                                              [(0, 192, 200), (1, 0, 20)]]
    assert predict._passes([100, 90], 64) == [[(0, 0, 64)], [(0, 64, 100)], [(1, 0, 64)],
                                              [(1, 64, 90)]]
