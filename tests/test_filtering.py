"""The synaptic filtering study (Pravin et al. 2024): filters, scores, classes, masks, retraining.

Each number is checked against an independent reference: the filters
against a numpy restatement of their definitions, the Simpson integral
against cases worked out by hand, filtered predictions against the whole
network run with the filtered weights loaded into it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import yaml

import tolerance
from lesion import catalog, data, models, operators, predict, sweeps, train
from lesion.config import ConfigError, check, load_schema
from lesion.studies.filtering import retrain, scores, settings
from test_workflow import tiny_config
from workflow_rules import REPO

SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")


def weights(shape=(6, 5, 3, 3), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def reference(name: str, w: np.ndarray, level: float) -> np.ndarray:
    """The filter's definition in numpy (float64): which entries are zeroed."""
    low, high = w.min(), w.max()
    alpha = low + level * (high - low)
    if name == "highpass":
        return w <= alpha
    if name == "lowpass":
        return w >= alpha
    half = (high - low) / 25 / 2
    return (w >= alpha - half) & (w < alpha + half)


@pytest.mark.parametrize("name", catalog.FILTERS)
@pytest.mark.parametrize("level", [0.0, 1 / 24, 0.3, 0.5, 23 / 24, 1.0])
def test_each_filter_zeroes_exactly_the_entries_its_definition_names(name, level):
    w = weights()
    out = operators.apply(name, {"weight": w}, level, seed=0)["weight"]
    removed = reference(name, w.double().numpy(), level)
    assert removed.any() or name == "pulse"
    assert torch.equal(out == 0, torch.from_numpy(removed))
    assert torch.equal(out[~torch.from_numpy(removed)], w[~torch.from_numpy(removed)])


def test_highpass_and_lowpass_at_the_ends_of_the_range():
    w = weights()
    flat = w.reshape(-1)
    assert int((operators.apply("highpass", {"w": w}, 0.0, 0)["w"] == 0).sum()) == 1  # the min
    assert bool((operators.apply("highpass", {"w": w}, 1.0, 0)["w"] == 0).all())
    assert bool((operators.apply("lowpass", {"w": w}, 0.0, 0)["w"] == 0).all())
    low = operators.apply("lowpass", {"w": w}, 1.0, 0)["w"].reshape(-1)
    assert torch.equal((low == 0).nonzero().reshape(-1), flat.argmax().reshape(1))


def test_the_pulse_band_is_each_tensors_own_and_removes_weights_inside_it():
    # The authors' global pulse took a fixed range [-1, 1] and kept every
    # weight below alpha + step or at least alpha - step: all of them, so it
    # zeroed nothing. Weights in [-0.1, 0.1] would also fall in no band of
    # width 2/25 centred on that range's grid. Here the band follows the
    # tensor's own range: at its middle it removes the weights around it.
    w = weights() * 0.05  # a range far inside [-1, 1]
    lo, hi = float(w.min()), float(w.max())
    mid = operators.apply("pulse", {"weight": w}, 0.5, 0)["weight"]
    centre, half = (lo + hi) / 2, (hi - lo) / 50
    expected = (w.double() >= centre - half) & (w.double() < centre + half)
    assert int(expected.sum()) > 0
    assert torch.equal(mid == 0, expected)


def test_pulse_bands_of_the_grid_are_narrow_and_disjoint():
    # width (max - min)/25, centres (max - min)/24 apart: no weight is in two bands
    w = weights((40, 30))
    hits = torch.zeros(w.shape, dtype=torch.int64)
    for level in scores.ALPHA_GRID:
        out = operators.apply("pulse", {"weight": w}, level, 0)["weight"]
        assert int((out == 0).sum()) < w.numel() // 4
        hits += (out == 0).to(torch.int64)
    assert int(hits.max()) == 1 and int(hits.sum()) > w.numel() // 2


@pytest.mark.parametrize("name", catalog.FILTERS)
def test_filters_are_deterministic_and_leave_their_input_alone(name):
    w = weights()
    before = w.clone()
    a = operators.apply(name, {"weight": w}, 0.4, seed=1)
    b = operators.apply(name, {"weight": w}, 0.4, seed=2)
    assert torch.equal(a["weight"], b["weight"]) and torch.equal(w, before)


@pytest.mark.parametrize("model_name,shape", [("cnn", (1, 8, 8)), ("resnet18_cifar", (3, 32, 32))])
def test_filters_are_given_conv_and_linear_weights_only_never_biases_or_batchnorm(model_name, shape):
    torch.manual_seed(0)
    model = models.build(model_name, num_classes=10, input_shape=shape)
    named = models.layers(model)
    for layer, module in named.items():
        base = sweeps.base_tensors(model, layer, "highpass")
        assert list(base) == ["weight"] and base["weight"].data_ptr() == module.weight.data_ptr()
    everything = sweeps.base_tensors(model, catalog.ALL_LAYERS, "lowpass")
    assert list(everything) == [f"{n}.weight" for n in named]
    for key, t in everything.items():
        assert t.data_ptr() == named[key.split(".")[0]].weight.data_ptr()
    # what is left out: every bias and every BatchNorm parameter
    given = {m.weight.data_ptr() for m in named.values()}
    left = {n for n, p in model.named_parameters() if p.data_ptr() not in given}
    norms = {f"{n}.{k}" for n, m in model.named_modules()
             if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) for k in ("weight", "bias")}
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert left == norms | biases and (model_name == "cnn" or norms)


def test_the_alpha_grid_has_25_points_from_min_to_max():
    assert len(scores.ALPHA_GRID) == 25
    assert scores.ALPHA_GRID[0] == 0.0 and scores.ALPHA_GRID[-1] == 1.0
    assert np.allclose(np.diff(scores.ALPHA_GRID), 1 / 24)
    w = weights()
    lo, hi = float(w.min()), float(w.max())
    for level, alpha in zip(scores.ALPHA_GRID, np.linspace(lo, hi, 25), strict=True):
        out = operators.apply("highpass", {"weight": w}, level, 0)["weight"]
        assert torch.equal(out == 0, w.double() <= alpha)


def _rows(model, layer):
    base = sweeps.base_tensors(model, layer, "highpass")
    rows = []
    for name in catalog.FILTERS:
        table, _ = sweeps.variant_table(base, dataset="digits", model=model.lesion_name,
                                       layer=layer, perturbation=name, levels=[0.3, 0.6],
                                       draws=1, study_seed=0)
        rows += table.to_pylist()
    return rows


@pytest.mark.parametrize("layer", ["conv2", "fc1", catalog.ALL_LAYERS])
def test_filtered_predictions_equal_the_whole_network_with_the_filtered_weights(cnn, digits, layer):
    images, labels = digits
    rows = _rows(cnn, layer)
    table = predict.weight_predictions(cnn, rows, images, labels, torch.device("cpu"),
                                       batch_size=64, variants_per_pass=4, cache_gb=1)
    top = np.array(table.column("top5").to_pylist())[:, 0].reshape(len(rows), -1)
    for i, row in enumerate(rows):
        network = models.build("cnn", num_classes=10, input_shape=(1, 8, 8))
        network.load_state_dict(cnn.state_dict())
        network.eval()
        named = models.layers(network)
        with torch.no_grad():
            for key, module in named.items():  # the filter's definition, layer by layer
                if layer in (key, catalog.ALL_LAYERS):
                    w = module.weight.double().numpy()
                    module.weight[torch.from_numpy(reference(row["perturbation"], w,
                                                             row["level"]))] = 0
            expected = network(images).argmax(1).numpy()
        assert np.array_equal(top[i], expected), row["variant"]


def test_simpson_matches_hand_computed_integrals():
    # three points: h/3 (f0 + 4 f1 + f2) = (0.5 / 3) * (0 + 4 * 1 + 0) = 2/3
    assert scores.integral([0, 0.5, 1], [0, 1, 0]) == pytest.approx(2 / 3, abs=1e-12)
    # Simpson is exact for cubics: the integral of x^3 - x over [0, 1] is 1/4 - 1/2
    grid = scores.ALPHA_GRID
    assert scores.integral(grid, [x**3 - x for x in grid]) == pytest.approx(-0.25, abs=1e-12)
    with pytest.raises(ValueError, match="increasing"):
        scores.integral([0, 1, 0.5], [1, 1, 1])


def _curves(clean, adversarial, baseline):
    rows = []
    for testset, values in (("clean", clean), ("fgsm", adversarial)):
        for level, v, b in zip(scores.ALPHA_GRID, values, baseline, strict=True):
            rows.append({"dataset": "d", "model": "m", "epoch": 1, "testset": testset,
                         "layer": "fc1", "filter": "highpass", "level": level, "top1": v,
                         "top1_unfiltered": 1.0, "normalised": v, "baseline": b})
    return pd.DataFrame(rows)


def _score(clean, adversarial, baseline, tol=0.05):
    return scores.scores(_curves(clean, adversarial, baseline), clean="clean", adversarial="fgsm",
                         tol=tol).iloc[0]


def test_a_score_is_the_accuracy_change_per_share_of_weights_removed():
    grid = np.array(scores.ALPHA_GRID)
    base = 1 - grid  # a filter that removes alpha of the weights: R = 1/2
    unharmed = _score([1.0] * 25, [1.0] * 25, base)
    assert unharmed["removed"] == pytest.approx(0.5, abs=1e-12)
    assert unharmed[["score_clean", "score_adversarial", "score_difference"]].abs().max() < 1e-12
    assert list(unharmed[["class_clean", "class_adversarial", "class_difference"]]) == [
        "robust"] * 3
    # accuracy falls exactly like the weights (the paper's baseline): -1, fragile
    on = _score(base, base, base)
    assert on["score_clean"] == pytest.approx(-1.0, abs=1e-12)
    assert on["class_clean"] == "fragile" and on["class_difference"] == "robust"
    # clean 1 - x/2 (integral of -x/2 = -1/4, over R = 1/2: -1/2), adversarial 1 + x/4
    # (integral 1/8: +1/4); their difference 3x/4 integrates to 3/8: 3/4
    table = _score(1 - grid / 2, 1 + grid / 4, base)
    assert table["score_clean"] == pytest.approx(-0.5, abs=1e-12)
    assert table["score_adversarial"] == pytest.approx(0.25, abs=1e-12)
    assert table["score_difference"] == pytest.approx(0.75, abs=1e-12)
    assert (table["class_clean"], table["class_adversarial"], table["class_difference"]) == (
        "fragile", "antifragile", "antifragile")
    assert table["peak_adversarial"] == pytest.approx(1.25) and table["trough_clean"] == 0.5


def test_a_pulse_that_removes_nothing_the_layer_needs_scores_zero_not_its_removed_share():
    # a pulse band takes 4-12% of the weights at each alpha, accuracy does not move: the
    # paper's integral of (accuracy - baseline) would be the removed share, ~0.07, here 0
    share = 0.04 + 0.08 * np.sin(np.pi * np.array(scores.ALPHA_GRID))
    flat = _score([1.0] * 25, [1.0] * 25, 1 - share)
    assert flat["removed"] == pytest.approx(float(scores.integral(scores.ALPHA_GRID, share)))
    assert flat["score_clean"] == 0.0 and flat["class_clean"] == "robust"
    # the same pulse when accuracy falls as fast as weights go scores -1 whatever the share
    falls = _score(1 - 3 * share, 1 - 3 * share, 1 - 3 * share)
    assert falls["score_clean"] == pytest.approx(-1.0, abs=1e-12)
    assert falls["class_clean"] == "fragile"  # down to 0.64 at the peak of the band


def test_antifragile_means_filtering_raised_accuracy_beyond_the_tolerance():
    grid = np.array(scores.ALPHA_GRID)
    base = 1 - 0.02 * np.ones(25)  # 2% of the weights removed: tiny changes score large
    # 3% above the unfiltered accuracy everywhere: score 1.5 but never above 1 + tol
    flat = _score([1.03] * 25, [1.0] * 25, base)
    assert flat["score_clean"] == pytest.approx(1.5) and flat["class_clean"] == "robust"
    raised = _score(1 + 0.2 * np.sin(np.pi * grid), [1.0] * 25, base)
    assert raised["peak_clean"] > 1.05 and raised["class_clean"] == "antifragile"
    # symmetric below: a 3% dip is robust, a 20% one fragile
    assert _score([0.97] * 25, [1.0] * 25, base)["class_clean"] == "robust"
    assert _score(1 - 0.2 * np.sin(np.pi * grid), [1.0] * 25, base)["class_clean"] == "fragile"
    # a filter that removes nothing has no score
    none = _score([1.0] * 25, [1.0] * 25, [1.0] * 25)
    assert np.isnan(none["score_clean"]) and none["class_clean"] is None


def test_classes_at_the_tolerance():
    assert scores.classify(0.05, 0.05, peak=2, trough=0) == "robust"
    assert scores.classify(-0.05, 0.05, peak=2, trough=0) == "robust"
    assert scores.classify(0.0501, 0.05, peak=1.0501, trough=1) == "antifragile"
    assert scores.classify(0.0501, 0.05, peak=1.05, trough=1) == "robust"
    assert scores.classify(-0.0501, 0.05, peak=1, trough=0.9499) == "fragile"
    assert scores.classify(-0.0501, 0.05, peak=1, trough=0.95) == "robust"
    assert scores.classify(0.2, 0.05, peak=0.0501, trough=0, level=0.0) == "antifragile"
    assert scores.classify(0.0, 0.0, peak=1, trough=1) == "robust"
    assert scores.classify(float("nan"), 0.1, peak=1, trough=1) is None
    with pytest.raises(ValueError, match="tol = -0.1"):
        scores.check_tol(-0.1)


def test_a_selection_of_every_layer_or_none_is_named_in_the_warning():
    every = ["fc1", "fc2", "fc3"]
    assert retrain.selection_warning("selected", ["fc1"], every) == ""
    assert "every layer" in retrain.selection_warning("selected", every[::-1], every)
    assert "no layer" in retrain.selection_warning("fragile", [], every)
    assert retrain.selection_warning("all", every, every) == ""


def test_retraining_intervals_are_students_t_over_the_replicates():
    from scipy import stats as scipy_stats

    from lesion.studies.filtering import plots

    values = [0.61, 0.64, 0.58]
    rows = [{"epoch": 2, "retrained": "all", "replicate": k, "top1_clean": v,
             "top1_adversarial": v / 2, "top1_original_adversarial": v / 3, "warning": ""}
            for k, v in enumerate(values)]
    rows.append({"epoch": 2, "retrained": "none", "replicate": 0, "top1_clean": 0.5,
                 "top1_adversarial": 0.2, "top1_original_adversarial": 0.2, "warning": ""})
    summary = plots.retraining_summary(pd.DataFrame(rows)).set_index(["retrained", "measure"])
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    got = summary.loc[("all", "top1_clean")]
    assert (got["mean"], got["low"], got["high"]) == pytest.approx((np.mean(values), low, high))
    assert got["replicates"] == 3
    assert np.isnan(summary.loc[("none", "top1_clean"), "low"])


def test_masks_select_exactly_the_weights_of_the_named_layers(cnn):
    table = pd.DataFrame({"layer": ["conv1", "conv2", "fc1", "fc2", "all"],
                          "filter": "lowpass", "epoch": 3,
                          "class_adversarial": ["robust", "fragile", "antifragile", "fragile",
                                                "robust"]})
    chosen = scores.selected_layers(table, epoch=3, filter="lowpass", score="adversarial",
                                    classes=retrain.SELECTIONS["selected"])
    assert chosen == ["conv1", "fc1"]
    fragile = scores.selected_layers(table, epoch=3, filter="lowpass", score="adversarial",
                                     classes=retrain.SELECTIONS["fragile"])
    assert fragile == ["conv2", "fc2"]
    masks = retrain.layer_masks(cnn, chosen)
    assert set(masks) == {n for n, _ in cnn.named_parameters()}
    # cnn is Sequential: conv1 = 0, conv2 = 2, fc1 = 6, fc2 = 8
    on = {n for n, m in masks.items() if m.all()}
    assert on == {"0.weight", "6.weight"}
    assert all(not m.any() for n, m in masks.items() if n not in on)


def test_selective_retraining_leaves_unselected_parameters_bit_identical(tmp_path, cnn):
    from lesion import tensorfiles

    spec = data.get("digits")
    raw = spec.raw()
    images, labels = spec.preprocess(raw["images"][:300]), raw["labels"][:300]
    for split, sl in (("train", slice(0, 200)), ("test", slice(200, 300))):
        tensorfiles.save_tensors({"images": images[sl], "labels": labels[sl]}, tmp_path / f"{split}.st",
                        {"dataset": "digits", "split": split})
    models.save_weights(cnn, tmp_path / "start.st")
    masks = retrain.layer_masks(cnn, ["conv2", "fc2"])
    train.train(train.Network("cnn", init=tmp_path / "start.st"), "digits",
                tmp_path / "train.st", tmp_path / "test.st", tmp_path / "out.st",
                tmp_path / "curve.parquet",
                train.Settings(epochs=1, batch_size=32, learning_rate=0.01, weight_decay=0.01,
                               seed=0),
                hooks=[train.Hook(masks=masks)])
    after = tensorfiles.load_tensors(tmp_path / "out.st")
    before = cnn.state_dict()
    for name, mask in masks.items():
        if mask.any():
            assert not torch.equal(after[name], before[name]), name
        else:
            assert torch.equal(after[name].view(torch.int32), before[name].view(torch.int32)), name


def _config(**filtering):
    return {"dataset": {"name": "digits"}, "models": {"mlp": {}},
            "train": {"epochs": 4, "checkpoints": [2, 4]},
            "filtering": {"models": ["mlp"], "epochs": [2, 4], "retraining": {"from": [2]},
                          **filtering}}


@pytest.mark.parametrize("change,message", [
    ({"filters": ["highpass", "bandpass"]}, "filtering.filters[1] = 'bandpass' is not allowed"),
    ({"tol": -0.1}, "filtering.tol = -0.1 is out of range; expected a number >= 0"),
    ({"epochs": [2, 3]}, "filtering.epochs: epoch 3 is not among train.checkpoints [2, 4]"),
    ({"retraining": {"from": [1]}}, "filtering.retraining.from: epoch 1 is not among "
                                    "filtering.epochs [2, 4]"),
    ({"models": ["cnn"]}, "filtering.models[0] = 'cnn' is not a model of this study"),
    ({"filters": ["pulse"], "retraining": {"from": [2], "filter": "lowpass"}},
     "filtering.retraining.filter = 'lowpass' is not among filtering.filters ['pulse']"),
    ({"eps": -0.1}, "filtering.eps = -0.1 is out of range; expected a number >= 0"),
    ({"retraining": {"from": [2], "seeds": 0}},
     "filtering.retraining.seeds = 0 is out of range; expected an integer >= 1"),
])
def test_a_bad_filtering_config_gives_one_clear_error(change, message):
    config = _config(**change)
    with pytest.raises(ConfigError) as err:
        check(config, SCHEMA)
        settings.check(config)
    assert message in str(err.value)
    good = _config()
    check(good, SCHEMA)
    settings.check(good)


FILTER_CONFIG = tiny_config("filtering")


@pytest.mark.workflow
def test_the_filtering_part_of_the_workflow_builds_end_to_end(tmp_path):
    from test_workflow import snakemake, study_copy

    study_copy(tmp_path, FILTER_CONFIG)
    snakemake(tmp_path)
    out = tmp_path / "results" / "digits" / "mlp" / "filtering"
    for name in ("heat_highpass", "heat_pulse", "class_map", "retraining"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    table = pd.read_parquet(out / "scores.parquet")
    assert list(table.columns) == scores.SCORE_COLUMNS
    assert len(table) == 2 * 2 * 4  # epochs x filters x (fc1, fc2, fc3, all)
    assert set(table["layer"]) == {"fc1", "fc2", "fc3", "all"}
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert set(metrics["testset"]) == {"clean", "fgsm"} and set(metrics["epoch"]) == {1, 2}
    top1 = metrics[(metrics["metric"] == "top1") & (metrics["perturbation"] == "none")]
    # the final checkpoint's clean top-1 is what training counted on the test split
    curve = pd.read_parquet(tmp_path / "results" / "digits" / "mlp" / "training.parquet")
    trained = curve[(curve["epoch"] == 2) & (curve["split"] == "test")]["accuracy"].item()
    clean = top1[(top1["epoch"] == 2) & (top1["testset"] == "clean")]["value"].item()
    assert clean == pytest.approx(trained, abs=1e-9) and clean > 0.5
    adversarial = top1[(top1["epoch"] == 2) & (top1["testset"] == "fgsm")]["value"].item()
    assert adversarial < clean  # FGSM against this very network hurts it
    variants = pd.read_parquet(out / "epoch2" / "variants.parquet")
    assert len(variants) == 4 * 2 * 25 and variants["sha256"].str.len().eq(64).all()
    everything = variants[variants["layer"] == "all"]
    assert (everything["tensors"] == "fc1.weight,fc2.weight,fc3.weight").all()
    # each checkpoint has its own FGSM set of every clean image: epoch 1's differs from 2's
    sets = {e: data.load_split(out / f"epoch{e}" / "fgsm.safetensors") for e in (1, 2)}
    test_images, test_labels = data.load_split(tmp_path / "results" / "digits" / "tensors" /
                                               "test.safetensors")
    assert all(torch.equal(labels, test_labels) for _, labels in sets.values())
    assert not torch.equal(sets[1][0], sets[2][0])
    assert (sets[2][0] - test_images).abs().max() == pytest.approx(0.1, abs=1e-6)
    retrained = pd.read_parquet(out / "retraining.parquet")
    assert list(retrained["retrained"]) == ["none", "all", "all", "selected", "selected",
                                            "fragile", "fragile"]
    assert list(retrained["epochs_retrained"]) == [0, 1, 1, 1, 1, 1, 1]
    trained = retrained[retrained["retrained"] != "none"]
    # replicate k's seed is shared by the ways, and differs between replicates
    assert trained.groupby("replicate")["seed"].nunique().eq(1).all()
    assert trained["seed"].nunique() == 2
    none = retrained.iloc[0]
    assert none["top1_clean"] == pytest.approx(clean, abs=1e-9)
    assert none["top1_original_adversarial"] == pytest.approx(adversarial, abs=1e-9)
    # FGSM regenerated against the unchanged checkpoint is the set its filtering scored
    assert none["top1_adversarial"] == pytest.approx(adversarial, abs=1e-9)
    assert (tmp_path / "results" / "digits" / "filtering" / "invariance.csv").is_file()
    # the claims table: selective retraining against none, recomputed from the table here
    claims = pd.read_parquet(tmp_path / "results" / "digits" / "claims.parquet")
    row = claims[claims["claim"].str.startswith("retraining only")].iloc[0]
    gain = trained.loc[trained["retrained"] == "selected", "top1_adversarial"] - adversarial
    half = scipy.stats.t.ppf(0.975, len(gain) - 1) * gain.std(ddof=1) / np.sqrt(len(gain))
    assert row["estimate"] == pytest.approx(gain.mean(), abs=1e-12)
    if half > 0:
        assert (row["low"], row["high"]) == pytest.approx((gain.mean() - half, gain.mean() + half))
    lo, hi = (row["low"], row["high"]) if half > 0 else (gain.mean(), gain.mean())
    expected = ("reproduced" if lo > 0 else "not reproduced" if hi <= 0 else "inconclusive")
    assert row["verdict"] == expected
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    assert config["filtering"]["models"] == ["mlp"]


def test_curves_normalise_by_the_unfiltered_network_and_the_baseline_counts_survivors():
    keys = {"dataset": "d", "model": "m", "layer": "fc1", "draw": 0, "metric": "top1"}
    long = pd.DataFrame([
        {**keys, "epoch": 1, "testset": "clean", "perturbation": "none", "layer": "none",
         "level": 0.0, "variant": "m", "value": 0.8},
        {**keys, "epoch": 1, "testset": "fgsm", "perturbation": "none", "layer": "none",
         "level": 0.0, "variant": "m", "value": 0.0},
        {**keys, "epoch": 1, "testset": "clean", "perturbation": "highpass", "level": 0.5,
         "variant": "v", "value": 0.6},
        {**keys, "epoch": 1, "testset": "fgsm", "perturbation": "highpass", "level": 0.5,
         "variant": "v", "value": 0.1},
    ])
    variants = pd.DataFrame({"epoch": [1], "variant": ["v"], "weights": [200], "changed": [150]})
    table = scores.curves(long, variants).set_index("testset")
    assert table.loc["clean", "normalised"] == pytest.approx(0.6 / 0.8)
    assert table.loc["clean", "baseline"] == pytest.approx(0.25)  # 50 of 200 weights survive
    # nothing right without filtering: no normalised curve, no score, no class
    assert np.isnan(table.loc["fgsm", "normalised"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_the_filtering_sweep_on_cuda_equals_the_cpu_one(tmp_path, cnn):
    """Filtered variants are built on the CPU, evaluated on CUDA in IEEE float32: the same
    variants (sha256), the same top-1 (where rounding cannot reorder it), losses within the
    float32 bound (tests/tolerance.py); layer "all" runs whole networks."""
    from lesion import tensorfiles
    from lesion.studies.filtering import filters

    spec = data.get("digits")
    raw = spec.raw()
    images, labels = spec.preprocess(raw["images"][:200]), raw["labels"][:200]
    split = {"dataset": "digits", "split": "test"}
    tensorfiles.save_tensors({"images": images, "labels": labels}, tmp_path / "test.st", split)
    models.save_weights(cnn, tmp_path / "cnn.st")
    tables, sets = {}, {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        filters.filter_checkpoints("digits", {3: tmp_path / "cnn.st"}, tmp_path / "test.st",
                                   out, eps=0.1, layers=["conv2", "all"], filters=list(catalog.FILTERS),
                                   study_seed=0, device=device, batch_size=64,
                                   variants_per_pass=4, cache_gb=1.0, precision="ieee")
        tables[device] = {name: pd.read_parquet(out / "epoch3" / "predictions" / f"{name}.parquet")
                          for name in ("clean", "fgsm", "clean_none", "fgsm_none")}
        tables[device]["variants"] = pd.read_parquet(out / "epoch3" / "variants.parquet")
        sets[device] = data.load_split(out / "epoch3" / "fgsm.safetensors")[0]
    assert tables["cpu"]["variants"]["sha256"].equals(tables["cuda"]["variants"]["sha256"])
    # each device made its own FGSM set: a gradient sign may flip where it is ~0, so the
    # fgsm rows are compared on the images whose attacked pixels agree bit for bit
    alike = (sets["cpu"] == sets["cuda"]).flatten(1).all(1).numpy()
    assert alike.mean() > 0.9
    # float32 on two devices, in another order: within the worst-case bound of
    # tests/tolerance.py. Filters only zero weights, and the bound grows with |W|, so
    # the clean network's bound holds for every filtered variant (per image, tiled
    # over the variants in the table's order: variant-major, image-minor).
    inputs = {"clean": images, "fgsm": sets["cpu"]}
    for name in ("clean", "fgsm", "clean_none", "fgsm_none"):
        cpu, gpu = tables["cpu"][name], tables["cuda"][name]
        if name.startswith("fgsm"):
            keep = alike[cpu["image"].to_numpy()]
            cpu, gpu = cpu[keep], gpu[keep]
        x = inputs[name.removesuffix("_none")]
        per_image = tolerance.loss_tolerance(cnn, x).numpy()
        tol = per_image[cpu["image"].to_numpy()]
        assert (cpu["image"].to_numpy() == gpu["image"].to_numpy()).all(), name
        assert (np.abs(cpu["loss"].to_numpy() - gpu["loss"].to_numpy()) <= tol).all(), name
        logits, err = tolerance.forward_bound(cnn, x, tolerance.U32)
        top2 = logits.topk(2, dim=1).values
        decided = ((top2[:, 0] - top2[:, 1]) > 2 * err.amax(1)).numpy()[cpu["image"].to_numpy()]
        same = np.stack(cpu["top5"])[:, 0] == np.stack(gpu["top5"])[:, 0]
        assert same[decided].all() and same.mean() > 0.99, name
