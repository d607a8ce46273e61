"""Metrics: exact values on hand-made predictions, the long schema, the draw summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from scipy import stats

from lesion import files, kinds, metrics, sweeps
from lesion.predict import _table

LABELS = torch.tensor([0, 1, 2, 3])


def predictions(ids, tops, losses):
    """A predictions table; `tops` holds, per variant, each image's top-5 list."""
    return _table(ids, LABELS, [torch.tensor(t) for t in tops],
                  [torch.tensor(x, dtype=torch.float32) for x in losses])


CLEAN = predictions(["mlp"], [[[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4], [0, 3, 1, 2, 4]]],
                    [[0.1, 0.2, 0.3, 0.4]])


def variants_table(levels_draws, layer="fc1"):
    rows = [{"variant": f"mlp-{layer}-gaussian{lv:.2f}-num{d}", "dataset": "digits", "model": "mlp",
             "perturbation": "gaussian", "layer": layer, "level": lv, "draw": d, "seed": 1,
             "sha256": "x", "weights": 10, "changed": 10, "rel_l1": 0.1, "rel_l2": 0.1}
            for lv, d in levels_draws]
    return pa.Table.from_pylist(rows, schema=sweeps.VARIANT_SCHEMA)


def test_values_of_every_metric():
    ids = ["mlp-fc1-gaussian0.50-num0", "mlp-fc1-gaussian0.50-num1"]
    tops = [
        [[0, 1, 2, 3, 4], [9, 8, 7, 6, 5], [1, 2, 0, 3, 4], [0, 1, 2, 3, 4]],  # top1 1/4, top5 3/4
        [[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4], [3, 0, 1, 2, 4]],  # all right
    ]
    long = metrics.study_metrics("digits", "mlp", CLEAN, [(
        variants_table([(0.5, 0), (0.5, 1)]),
        predictions(ids, tops, [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.4]]))])
    assert list(long.columns) == ["dataset", "model", "testset", "perturbation", "layer", "level", "draw",
                                  "variant", "metric", "value"]
    assert set(long["testset"]) == {"clean"}  # the default test set
    value = long.set_index(["variant", "metric"])["value"]
    # the clean model gets 3 of 4 right (image 3 predicts 0), agrees with itself
    assert value[("mlp", "top1")] == 0.75
    assert value[("mlp", "top5")] == 1.0
    assert value[("mlp", "agreement")] == 1.0
    assert value[("mlp", "loss")] == pytest.approx(0.25)
    assert value[(ids[0], "top1")] == 0.25
    assert value[(ids[0], "top5")] == 0.75
    assert value[(ids[0], "agreement")] == 0.5  # images 0 and 3 keep the clean top-1 (0, 0)
    assert value[(ids[0], "loss")] == pytest.approx(2.5)
    assert value[(ids[1], "top1")] == 1.0
    assert value[(ids[1], "agreement")] == 0.75
    none = long[long["perturbation"] == "none"]
    assert set(none["level"]) == {0.0} and set(none["layer"]) == {"none"}
    assert set(none["draw"]) == {0} and set(none["dataset"]) == {"digits"}
    assert set(long["model"]) == {"mlp"} and set(long["dataset"]) == {"digits"}
    assert list(long["metric"].unique()) == ["top1", "top5", "loss", "agreement", "nonfinite"]


def test_summary_averages_draws_with_a_t_interval():
    long = pd.DataFrame({
        "dataset": "digits", "model": "mlp", "testset": "clean", "perturbation": "gaussian", "layer": "fc1",
        "level": 0.5, "draw": [0, 1, 2], "variant": [f"mlp-fc1-gaussian0.50-num{d}" for d in range(3)],
        "metric": "top1", "value": [0.5, 0.6, 0.9]})
    row = metrics.summarise(long).iloc[0]
    assert row["variant"] == "mlp-fc1-gaussian0.50"
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(2 / 3)
    std = np.std([0.5, 0.6, 0.9], ddof=1)
    assert row["std"] == pytest.approx(std)
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * std / np.sqrt(3))


def test_metrics_step_refuses_unpaired_tables(tmp_path):
    with pytest.raises(ValueError, match="one predictions table per variants table and test set"):
        metrics.write_metrics("digits", "mlp", clean="c", variants=["a", "b"], predictions=["a"],
                              out=tmp_path / "m", summary_out=tmp_path / "s",
                              summary_csv=tmp_path / "c.csv")
    assert not list(tmp_path.iterdir())


def test_metrics_step_writes_the_values_to_parquet_and_csv(tmp_path):
    ids = ["mlp-fc1-gaussian0.50-num0", "mlp-fc1-gaussian0.50-num1"]
    tops = [[[0, 1, 2, 3, 4], [9, 8, 7, 6, 5], [1, 2, 0, 3, 4], [0, 1, 2, 3, 4]],   # top1 1/4
            [[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4], [3, 0, 1, 2, 4]]]   # top1 4/4
    paths = {name: tmp_path / f"{name}.parquet" for name in ("clean", "variants", "predictions")}
    files.write_table(CLEAN, paths["clean"], kind=kinds.PREDICTIONS)
    files.write_table(variants_table([(0.5, 0), (0.5, 1)]), paths["variants"], kind=kinds.VARIANTS)
    files.write_table(predictions(ids, tops, [[1.0] * 4, [2.0] * 4]), paths["predictions"],
                      kind=kinds.PREDICTIONS)
    out = {name: tmp_path / name for name in ("long.parquet", "summary.parquet", "summary.csv")}
    metrics.write_metrics("digits", "mlp", clean=str(paths["clean"]),
                          variants=[str(paths["variants"])],
                          predictions=[str(paths["predictions"])], out=out["long.parquet"],
                          summary_out=out["summary.parquet"], summary_csv=out["summary.csv"])
    long = pd.read_parquet(out["long.parquet"]).set_index(["variant", "metric"])["value"]
    assert long[(ids[0], "top1")] == 0.25 and long[(ids[1], "top1")] == 1.0
    assert long[("mlp", "top1")] == 0.75
    summary = pd.read_parquet(out["summary.parquet"])
    row = summary[(summary["metric"] == "top1") & (summary["perturbation"] == "gaussian")].iloc[0]
    assert (row["mean"], row["n"]) == (0.625, 2)
    assert row["std"] == pytest.approx(np.std([0.25, 1.0], ddof=1))
    # two draws: t with one degree of freedom, 12.706 (a t table)
    assert row["ci95"] == pytest.approx(12.706 * np.std([0.25, 1.0], ddof=1) / np.sqrt(2),
                                        rel=1e-4)
    assert row["variant"] == "mlp-fc1-gaussian0.50"
    # rows in the order the long table first names them (metric by metric; the clean
    # model first), not sorted, which would put gaussian before none
    assert summary["perturbation"].tolist()[:2] == ["none", "gaussian"]
    assert summary["variant"].tolist()[:2] == ["mlp", "mlp-fc1-gaussian0.50"]
    assert summary["metric"].tolist()[:3] == ["top1", "top1", "top5"]
    csv = pd.read_csv(out["summary.csv"])
    pd.testing.assert_frame_equal(csv, summary, check_dtype=False)


def two_sweeps(tmp_path):
    """Two sweeps' tables on disk (fc1: top-1 1/4; fc2: top-1 4/4) and the clean one."""
    tops = {"fc1": [[0, 1, 2, 3, 4], [9, 8, 7, 6, 5], [1, 2, 0, 3, 4], [0, 1, 2, 3, 4]],
            "fc2": [[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4], [3, 0, 1, 2, 4]]}
    paths = {"clean": str(tmp_path / "none.parquet")}
    files.write_table(CLEAN, paths["clean"], kind=kinds.PREDICTIONS)
    for layer, top in tops.items():
        paths[f"v-{layer}"] = str(tmp_path / f"variants-{layer}.parquet")
        paths[f"p-{layer}"] = str(tmp_path / f"predictions-{layer}.parquet")
        files.write_table(variants_table([(0.5, 0)], layer), paths[f"v-{layer}"], kind=kinds.VARIANTS)
        files.write_table(predictions([f"mlp-{layer}-gaussian0.50-num0"], [top], [[1.0] * 4]),
                          paths[f"p-{layer}"], kind=kinds.PREDICTIONS)
    return paths


def top1_of(tmp_path, paths, variants, predictions, model="mlp"):
    out = tmp_path / "out"
    metrics.write_metrics("digits", model, clean=paths["clean"], variants=variants,
                          predictions=predictions, out=out / "m.parquet",
                          summary_out=out / "s.parquet", summary_csv=out / "s.csv")
    long = pd.read_parquet(out / "m.parquet")
    return long[long["metric"] == "top1"].set_index("layer")["value"].to_dict()


def test_predictions_are_matched_to_their_variants_by_id_not_by_position(tmp_path):
    paths = two_sweeps(tmp_path)
    expected = {"none": 0.75, "fc1": 0.25, "fc2": 1.0}  # counted by hand from the tops above
    in_order = top1_of(tmp_path, paths, [paths["v-fc1"], paths["v-fc2"]],
                       [paths["p-fc1"], paths["p-fc2"]])
    swapped = top1_of(tmp_path, paths, [paths["v-fc1"], paths["v-fc2"]],
                      [paths["p-fc2"], paths["p-fc1"]])
    assert in_order == swapped == expected


def test_a_sweep_steps_tables_of_several_layers_give_the_metrics_of_each_layers_tables(tmp_path):
    """One operator's variants and predictions over two layers (a sweep step's tables) give
    the metrics the two layers' own tables give."""
    paths = two_sweeps(tmp_path)
    for kind, name in (("v", kinds.VARIANTS), ("p", kinds.PREDICTIONS)):
        both = pa.concat_tables([files.read_table(paths[f"{kind}-{layer}"])
                                 for layer in ("fc1", "fc2")])
        paths[f"{kind}-both"] = str(tmp_path / f"{kind}-both.parquet")
        files.write_table(both, paths[f"{kind}-both"], kind=name)
    expected = {"none": 0.75, "fc1": 0.25, "fc2": 1.0}
    assert top1_of(tmp_path, paths, [paths["v-both"]], [paths["p-both"]]) == expected
    with pytest.raises(files.InputFileError, match=r"predictions-fc1.parquet: predictions of 1 "
                       r"of the 2 variants of .*v-both.parquet"):
        top1_of(tmp_path, paths, [paths["v-both"]], [paths["p-fc1"]])


def test_metrics_refuse_predictions_of_a_sweep_not_given_naming_both_files(tmp_path):
    paths = two_sweeps(tmp_path)
    with pytest.raises(files.InputFileError, match=r"predictions-fc2.parquet: predictions of "
                       r"variants no --variants table holds .*variants-fc1.parquet"):
        top1_of(tmp_path, paths, [paths["v-fc1"]], [paths["p-fc2"]])
    with pytest.raises(files.InputFileError, match=r"predictions-fc1.parquet and "
                       r".*predictions-fc1.parquet: both are predictions of .*variants-fc1"):
        top1_of(tmp_path, paths, [paths["v-fc1"], paths["v-fc2"]], [paths["p-fc1"]] * 2)


def test_metrics_refuse_another_models_tables(tmp_path):
    paths = two_sweeps(tmp_path)
    with pytest.raises(files.InputFileError, match=r"none.parquet: the predictions of \['mlp'\], "
                       r"but --model is 'cnn'"):
        top1_of(tmp_path, paths, [paths["v-fc1"]], [paths["p-fc1"]], model="cnn")


def test_metrics_of_several_test_sets_are_kept_apart_each_against_its_own_clean_model(tmp_path):
    ids = ["mlp-fc1-gaussian0.50-num0", "mlp-fc1-gaussian0.50-num1"]
    right = [[[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4], [3, 0, 1, 2, 4]]] * 2
    wrong = [[[9, 1, 2, 3, 4], [9, 0, 2, 3, 4], [9, 0, 1, 3, 4], [3, 0, 1, 2, 4]]] * 2  # 1/4
    paths = {}
    for name, table, kind in (
            ("clean", CLEAN, kinds.PREDICTIONS),
            ("variants", variants_table([(0.5, 0), (0.5, 1)]), kinds.VARIANTS),
            ("p_clean", predictions(ids, right, [[1.0] * 4] * 2), kinds.PREDICTIONS),
            ("p_fgsm", predictions(ids, wrong, [[1.0] * 4] * 2), kinds.PREDICTIONS)):
        paths[name] = str(tmp_path / f"{name}.parquet")
        files.write_table(table, paths[name], kind=kind)
    out = {name: tmp_path / name for name in ("long.parquet", "summary.parquet", "summary.csv")}
    metrics.write_metrics("digits", "mlp", clean=[paths["clean"], paths["clean"]],
                          variants=[paths["variants"]],
                          predictions=[paths["p_clean"], paths["p_fgsm"]], out=out["long.parquet"],
                          summary_out=out["summary.parquet"], summary_csv=out["summary.csv"],
                          testsets=["clean", "fgsm"])
    long = pd.read_parquet(out["long.parquet"]).set_index(["testset", "variant", "metric"])["value"]
    assert long[("clean", ids[0], "top1")] == 1.0 and long[("fgsm", ids[0], "top1")] == 0.25
    assert long[("fgsm", "mlp", "top1")] == long[("clean", "mlp", "top1")]
    summary = pd.read_parquet(out["summary.parquet"])
    assert sorted(set(summary["testset"])) == ["clean", "fgsm"]
    with pytest.raises(ValueError, match=r"for test sets \['clean', 'fgsm'\]"):
        metrics.write_metrics("digits", "mlp", clean=[paths["clean"]], variants=[paths["variants"]],
                              predictions=[paths["p_clean"]], out=out["long.parquet"],
                              summary_out=out["summary.parquet"], summary_csv=out["summary.csv"],
                              testsets=["clean", "fgsm"])
