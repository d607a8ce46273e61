"""The claims table: verdicts, intervals, and each study's claims on tables made by hand.

Intervals are checked against references outside lesion (scipy's Welch
test, Newcombe's published example); every estimate and verdict below is
recomputed from the hand-made table by a few independent lines.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.stats
from safetensors.numpy import save_file

from lesion import claims, files, kinds

INF = math.inf


def judge(low, high, expected):
    """The verdict rule, restated: inside, outside or across the claim's open range."""
    a, b = expected
    if a < low and high < b:
        return "reproduced"
    if high <= a or low >= b:
        return "not reproduced"
    return "inconclusive"


@pytest.mark.parametrize("low,high,expected,verdict", [
    (0.1, 0.3, (0.0, INF), "reproduced"),
    (-0.3, -0.1, (0.0, INF), "not reproduced"),
    (-0.1, 0.3, (0.0, INF), "inconclusive"),
    (0.0, 0.3, (0.0, INF), "inconclusive"),     # the null itself is not excluded
    (0.95, 1.05, (0.9, 1.1), "reproduced"),
    (1.05, 1.2, (0.9, 1.1), "inconclusive"),
    (1.2, 1.3, (0.9, 1.1), "not reproduced"),
])
def test_the_verdict_is_where_the_interval_lies_against_the_claims_range(low, high, expected,
                                                                         verdict):
    assert claims.verdict((low + high) / 2, low, high, expected) == verdict == judge(
        low, high, expected)


def test_a_claim_without_an_interval_is_judged_on_its_estimate():
    assert claims.verdict(1.02, math.nan, math.nan, (0.9, 1.1)) == "reproduced"
    assert claims.verdict(1.5, math.nan, math.nan, (0.9, 1.1)) == "not reproduced"
    assert claims.verdict(math.nan, math.nan, math.nan, (0.9, 1.1)) == "inconclusive"


def test_welch_matches_scipys_unequal_variance_t_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.5, 7), rng.normal(0.4, 0.2, 12)
    diff, low, high = claims.welch(list(a), list(b))
    ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert all(math.isnan(x) for x in claims.welch([1.0], [0.5, 0.7])[1:])


def test_the_difference_of_proportions_matches_newcombes_published_example():
    # Newcombe (1998), Stat. Med. 17:873, Table II (a): 56/70 - 48/80, method 10
    diff, low, high = claims.proportion_difference(56 / 70, 70, 48 / 80, 80)
    assert diff == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_the_table_computes_every_verdict_and_keeps_the_numbers():
    rows = [claims.Claim("s", "c1", "p", 1.0, "m", "x", 0.5, 0.2, 0.8, (0.0, INF), "t"),
            claims.Claim("s", "c2", "p", math.nan, "m", "x", 0.1, -0.2, 0.4, (0.0, INF), "t")]
    table = claims.table(rows)
    assert list(table.columns) == claims.COLUMNS
    assert list(table["verdict"]) == ["reproduced", "inconclusive"]
    assert table.loc[0, "expected_low"] == 0.0 and table.loc[0, "expected_high"] == INF


def _write(frame: pd.DataFrame, path, kind, metadata=None):
    files.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, metadata,
                      kind=kind)
    return str(path)


def _summary(clean, knockout):
    """A metrics summary: the clean network and synapse knockout at 0.5 and 0.7 per layer,
    `knockout` = {layer: (mean, std, n)} at 0.7."""
    rows = [{"dataset": "d", "model": "m", "testset": "clean", "perturbation": "none",
             "layer": "none", "level": 0.0, "variant": "m", "metric": "top1", "mean": clean,
             "std": math.nan, "ci95": math.nan, "n": 1}]
    for layer, (mean, std, n) in knockout.items():
        for level in (0.5, 0.7):
            rows.append({"dataset": "d", "model": "m", "testset": "clean",
                         "perturbation": "synapse_knockout", "layer": layer, "level": level,
                         "variant": f"m-{layer}-{level}", "metric": "top1", "mean": mean,
                         "std": std, "n": n,
                         "ci95": scipy.stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)})
    return pd.DataFrame(rows)


def test_cheneys_claims_from_a_summary(tmp_path):
    from lesion.studies.perturbation import claims as study

    knock = {"conv1": (0.2, 0.05, 5), "conv2": (0.8, 0.02, 5), "fc1": (0.7, 0.04, 5),
             "fc2": (0.1, 0.01, 5)}
    path = _write(_summary(0.9, knock), tmp_path / "s.parquet", kinds.SUMMARY)
    first, kept = study.claims({"summary:cnn": path})
    # the most fragile higher hidden layer is fc1 (fc2 is the output layer): 0.7 vs 0.2
    va, vb = (0.04 / 0.9) ** 2 / 5, (0.05 / 0.9) ** 2 / 5
    dof = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    half = scipy.stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert first.estimate == pytest.approx((0.7 - 0.2) / 0.9)
    assert (first.low, first.high) == pytest.approx(((0.5 - 0.9 * half) / 0.9,
                                                     (0.5 + 0.9 * half) / 0.9))
    assert "fc1" in first.subject and "conv1" in first.subject
    assert kept.estimate == pytest.approx(0.7 / 0.9)
    table = claims.table([first, kept])
    assert list(table["verdict"]) == [judge(first.low, first.high, (0, INF)),
                                      judge(kept.low, kept.high, (0.7, INF))]


def test_the_fault_claims_from_bounds_and_errors(tmp_path):
    from lesion.studies.faults import claims as study
    from lesion.studies.faults import kinds as fault_kinds

    bounds = pd.DataFrame([
        {"dataset": "d", "model": "mlp", "layer": "fc1", "p": p, "bound": "b3",
         "statistic": "std", "value": v, "mc": mc, "mc_ci95": math.nan}
        for p, v, mc in ((0.01, 0.31, 0.30), (0.1, 0.9, 0.7))])
    errors = {role: pd.DataFrame([{"dataset": "d", "model": "mlp", "layer": "fc1", "p": p,
                                   "statistic": "norm_l2", "value": v}
                                  for p, v in ((0.05, scale / 2), (0.1, scale), (0.2, 9.0))])
              for role, scale in (("base", 2.0), ("dropout", 1.0), ("regularised", 4.0))}
    tables = {"bounds:mlp": _write(bounds, tmp_path / "b.parquet", fault_kinds.BOUNDS)}
    for role, frame in errors.items():
        tables[f"errors:mlp:{role}"] = _write(frame, tmp_path / f"{role}.parquet",
                                              fault_kinds.ERRORS)
    b3, dropout, regulariser = claims.table(study.claims(tables)).to_dict("records")
    assert b3["estimate"] == pytest.approx(0.31 / 0.30) and b3["verdict"] == "reproduced"
    assert dropout["estimate"] == pytest.approx(2.0) and dropout["verdict"] == "reproduced"
    assert regulariser["estimate"] == pytest.approx(0.5)
    assert regulariser["verdict"] == "not reproduced"


def test_the_adversarial_claims_from_its_tables(tmp_path):
    from lesion.studies.adversarial import claims as study
    from lesion.studies.adversarial import kinds as adv_kinds

    rng = np.random.default_rng(1)
    sets = {}
    for model, centre in (("FC10-1e-4", 0.06), ("FC10-1", 0.14)):
        d = rng.normal(centre, 0.02, 40).astype(np.float32)
        d[0] = 0.0  # already at its target: left out
        success = np.ones(40, dtype=np.int64)
        success[1] = 0  # failed: left out
        save_file({"distortion": d, "success": success}, str(tmp_path / f"{model}.st"))
        sets[model] = d[2:]
    distortion = pd.DataFrame([
        {"model": m, "arch": "fc10", "weight_decay": wd, "train_split": "all",
         "train_error": 0.1, "test_error": 0.1, "mean_distortion": 0.1, "success_rate": 1.0,
         "n_images": 40, "n_at_target": 1, "attack": "lbfgs"}
        for m, wd in (("FC10-1e-4", 1e-4), ("FC10-1", 1.0))])
    transfer = pd.DataFrame([
        {"source": s, "target": t, "attack": a, "amplified": amp, "sigma": sigma,
         "noise_std": math.nan, "error": e, "mean_distortion": 0.1}
        for s, t, a, amp, sigma, e in (
            ("FC10-1", "FC10-1e-4", "lbfgs", True, 0.1, 0.5),
            ("FC10-1e-4", "FC10-1", "lbfgs", True, 0.1, 0.3),
            ("FC10-1", "FC10-1", "lbfgs", True, 0.1, 1.0),    # its own model: left out
            ("gaussian", "FC10-1", "gaussian", False, 0.1, 0.05),
            ("gaussian", "FC10-1e-4", "gaussian", False, 0.1, 0.15),
            ("gaussian", "FC10-1", "gaussian", False, 0.3, 0.5))])
    training = pd.DataFrame([
        {"model": "FC", "regime": r, "replicate": k, "seed": k, "weight_decay": wd,
         "dropout": 0.0, "adversarial": adv, "train_error": 0.0, "test_error": e,
         "test_error_mean": 0.0, "test_error_low": 0.0, "test_error_high": 0.0}
        for r, wd, adv, errors in (("base", 0.0, "none", (0.02, 0.03, 0.025)),
                                   ("weight_decay", 1e-3, "none", (0.05, 0.06, 0.055)),
                                   ("adversarial", 1e-3, "fgsm", (0.04, 0.045, 0.05)))
        for k, e in enumerate(errors)])
    tables = {"distortion": _write(distortion, tmp_path / "d.parquet", adv_kinds.DISTORTION),
              "transfer": _write(transfer, tmp_path / "t.parquet", adv_kinds.TRANSFER),
              "adversarial_training": _write(training, tmp_path / "a.parquet",
                                             adv_kinds.ADVERSARIAL_TRAINING),
              **{f"lbfgs:{m}": str(tmp_path / f"{m}.st") for m in sets}}
    decay, transfers, trained = study.claims(tables)
    ci = scipy.stats.ttest_ind(sets["FC10-1"], sets["FC10-1e-4"], equal_var=False
                               ).confidence_interval(0.95)
    assert decay.estimate == pytest.approx(sets["FC10-1"].mean() - sets["FC10-1e-4"].mean())
    assert (decay.low, decay.high) == pytest.approx((ci.low, ci.high))
    assert transfers.estimate == pytest.approx(0.4 - 0.1)  # (0.5 + 0.3)/2 - (0.05 + 0.15)/2
    # adversarial training against weight decay alone at the same decay, not the base
    assert trained.estimate == pytest.approx(0.055 - 0.045)
    assert "weight decay 0.001 alone" in trained.measure


def test_the_zoo_claims_read_accuracy_against_chance(tmp_path):
    from lesion.studies.zoo import claims as study
    from lesion.studies.zoo import kinds as zoo_kinds

    meta = pd.DataFrame({"property": ["optimizer", "dataset"], "n_classes": [3, 4],
                         "chance": [1 / 3, 0.25], "accuracy": [0.8, 0.3], "ci95": [0.1, 0.1]})
    rows = claims.table(study.claims({"meta": _write(meta, tmp_path / "m.parquet",
                                                     zoo_kinds.META)}))
    assert list(rows["estimate"]) == pytest.approx([0.8 - 1 / 3, 0.05])
    assert list(rows["verdict"]) == ["reproduced", "inconclusive"]
