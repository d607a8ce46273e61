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
import torch
import yaml

import tolerance
from lesion import catalog, data, models, perturb, predict, sweep, train
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
    out = perturb.apply(name, {"weight": w}, level, seed=0)["weight"]
    removed = reference(name, w.double().numpy(), level)
    assert removed.any() or name == "pulse"
    assert torch.equal(out == 0, torch.from_numpy(removed))
    assert torch.equal(out[~torch.from_numpy(removed)], w[~torch.from_numpy(removed)])


def test_highpass_and_lowpass_at_the_ends_of_the_range():
    w = weights()
    flat = w.reshape(-1)
    assert int((perturb.apply("highpass", {"w": w}, 0.0, 0)["w"] == 0).sum()) == 1  # the min
    assert bool((perturb.apply("highpass", {"w": w}, 1.0, 0)["w"] == 0).all())
    assert bool((perturb.apply("lowpass", {"w": w}, 0.0, 0)["w"] == 0).all())
    low = perturb.apply("lowpass", {"w": w}, 1.0, 0)["w"].reshape(-1)
    assert torch.equal((low == 0).nonzero().reshape(-1), flat.argmax().reshape(1))


def test_the_pulse_band_is_each_tensors_own_and_removes_weights_inside_it():
    # The authors' global pulse took a fixed range [-1, 1] and kept every
    # weight below alpha + step or at least alpha - step: all of them, so it
    # zeroed nothing. Weights in [-0.1, 0.1] would also fall in no band of
    # width 2/25 centred on that range's grid. Here the band follows the
    # tensor's own range: at its middle it removes the weights around it.
    w = weights() * 0.05  # a range far inside [-1, 1]
    lo, hi = float(w.min()), float(w.max())
    mid = perturb.apply("pulse", {"weight": w}, 0.5, 0)["weight"]
    centre, half = (lo + hi) / 2, (hi - lo) / 50
    expected = (w.double() >= centre - half) & (w.double() < centre + half)
    assert int(expected.sum()) > 0
    assert torch.equal(mid == 0, expected)


def test_pulse_bands_of_the_grid_are_narrow_and_disjoint():
    # width (max - min)/25, centres (max - min)/24 apart: no weight is in two bands
    w = weights((40, 30))
    hits = torch.zeros(w.shape, dtype=torch.int64)
    for level in scores.ALPHA_GRID:
        out = perturb.apply("pulse", {"weight": w}, level, 0)["weight"]
        assert int((out == 0).sum()) < w.numel() // 4
        hits += (out == 0).to(torch.int64)
    assert int(hits.max()) == 1 and int(hits.sum()) > w.numel() // 2


@pytest.mark.parametrize("name", catalog.FILTERS)
def test_filters_are_deterministic_and_leave_their_input_alone(name):
    w = weights()
    before = w.clone()
    a = perturb.apply(name, {"weight": w}, 0.4, seed=1)
    b = perturb.apply(name, {"weight": w}, 0.4, seed=2)
    assert torch.equal(a["weight"], b["weight"]) and torch.equal(w, before)


@pytest.mark.parametrize("model_name,shape", [("cnn", (1, 8, 8)), ("resnet18_cifar", (3, 32, 32))])
def test_filters_are_given_conv_and_linear_weights_only_never_biases_or_batchnorm(model_name, shape):
    torch.manual_seed(0)
    model = models.build(model_name, num_classes=10, input_shape=shape)
    named = models.layers(model)
    for layer, module in named.items():
        base = sweep.base_tensors(model, layer, "highpass")
        assert list(base) == ["weight"] and base["weight"].data_ptr() == module.weight.data_ptr()
    everything = sweep.base_tensors(model, catalog.ALL_LAYERS, "lowpass")
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
        out = perturb.apply("highpass", {"weight": w}, level, 0)["weight"]
        assert torch.equal(out == 0, w.double() <= alpha)


def _rows(model, layer):
    base = sweep.base_tensors(model, layer, "highpass")
    rows = []
    for name in catalog.FILTERS:
        table, _ = sweep.variant_table(base, dataset="digits", model=model.lesion_name,
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


def test_a_curve_on_its_baseline_is_robust_above_antifragile_below_fragile():
    base = [1 - x for x in scores.ALPHA_GRID]
    on = scores.scores(_curves(base, base, base), clean="clean", adversarial="fgsm", tol=0.05)
    assert on[["score_clean", "score_adversarial", "score_difference"]].abs().max().max() < 1e-12
    assert list(on.loc[0, ["class_clean", "class_adversarial", "class_difference"]]) == [
        "robust"] * 3
    above = [min(1.0, b + 0.2) for b in base]  # integral of min(0.2, x): 0.2 - 0.02 = 0.18
    below = [max(0.0, b - 0.2) for b in base]
    table = scores.scores(_curves(above, below, base), clean="clean", adversarial="fgsm",
                          tol=0.05).iloc[0]
    assert table["score_clean"] == pytest.approx(0.18, abs=0.005)
    assert table["score_adversarial"] == pytest.approx(-0.18, abs=0.005)
    assert (table["class_clean"], table["class_adversarial"], table["class_difference"]) == (
        "antifragile", "fragile", "fragile")


def test_classes_at_the_tolerance():
    assert scores.classify(0.05, 0.05) == "robust" and scores.classify(-0.05, 0.05) == "robust"
    assert scores.classify(0.0501, 0.05) == "antifragile"
    assert scores.classify(-0.0501, 0.05) == "fragile"
    assert scores.classify(0.0, 0.0) == "robust" and scores.classify(float("nan"), 0.1) is None
    with pytest.raises(ValueError, match="tol = -0.1"):
        scores.check_tol(-0.1)


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
                          **filtering},
            "adversarial": {"models": ["mlp"], "attacks": {"fgsm": {"eps": 0.1}}}}


@pytest.mark.parametrize("change,message", [
    ({"filters": ["highpass", "bandpass"]}, "filtering.filters[1] = 'bandpass' is not allowed"),
    ({"tol": -0.1}, "filtering.tol = -0.1 is out of range; expected a number >= 0"),
    ({"epochs": [2, 3]}, "filtering.epochs: epoch 3 is not among train.checkpoints [2, 4]"),
    ({"retraining": {"from": [1]}}, "filtering.retraining.from: epoch 1 is not among "
                                    "filtering.epochs [2, 4]"),
    ({"models": ["cnn"]}, "filtering.models[0] = 'cnn' is not a model of this study"),
    ({"filters": ["pulse"], "retraining": {"from": [2], "filter": "lowpass"}},
     "filtering.retraining.filter = 'lowpass' is not among filtering.filters ['pulse']"),
    ("no fgsm", r"filtering needs an FGSM test set per model; expected adversarial.attacks.fgsm"),
])
def test_a_bad_filtering_config_gives_one_clear_error(change, message):
    if change == "no fgsm":
        config = _config()
        config["adversarial"]["attacks"] = {"pgd": {}}
        with pytest.raises(ConfigError, match=message):
            check(config, SCHEMA)
        return
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
    retrained = pd.read_parquet(out / "retraining.parquet")
    assert list(retrained["retrained"]) == ["none", "all", "selected", "fragile"]
    assert list(retrained["epochs_retrained"]) == [0, 1, 1, 1]
    none = retrained.iloc[0]
    assert none["top1_clean"] == pytest.approx(clean, abs=1e-9)
    assert none["top1_original_adversarial"] == pytest.approx(adversarial, abs=1e-9)
    # FGSM regenerated against the unchanged final network is the study's FGSM set
    assert none["top1_adversarial"] == pytest.approx(adversarial, abs=1e-9)
    assert (tmp_path / "results" / "digits" / "filtering" / "invariance.csv").is_file()
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
    tensorfiles.save_tensors({"images": (images + 0.1).clamp(0, 1), "labels": labels}, tmp_path / "adv.st",
                    split)
    models.save_weights(cnn, tmp_path / "cnn.st")
    tables = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        filters.filter_checkpoints("digits", {3: tmp_path / "cnn.st"},
                                   {"clean": tmp_path / "test.st", "fgsm": tmp_path / "adv.st"},
                                   out, layers=["conv2", "all"], filters=list(catalog.FILTERS),
                                   study_seed=0, device=device, batch_size=64,
                                   variants_per_pass=4, cache_gb=1.0, precision="ieee")
        tables[device] = {name: pd.read_parquet(out / "epoch3" / "predictions" / f"{name}.parquet")
                          for name in ("clean", "fgsm", "clean_none", "fgsm_none")}
        tables[device]["variants"] = pd.read_parquet(out / "epoch3" / "variants.parquet")
    assert tables["cpu"]["variants"]["sha256"].equals(tables["cuda"]["variants"]["sha256"])
    # float32 on two devices, in another order: within the worst-case bound of
    # tests/tolerance.py. Filters only zero weights, and the bound grows with |W|, so
    # the clean network's bound holds for every filtered variant (per image, tiled
    # over the variants in the table's order: variant-major, image-minor).
    inputs = {"clean": images, "fgsm": (images + 0.1).clamp(0, 1)}
    for name in ("clean", "fgsm", "clean_none", "fgsm_none"):
        cpu, gpu = tables["cpu"][name], tables["cuda"][name]
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
