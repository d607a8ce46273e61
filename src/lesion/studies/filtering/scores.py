"""Filtering scores and classes (Pravin et al. 2024), from the sweep's tables alone (no torch).

For one (model, epoch, layer, filter) and a test set, the *normalised
accuracy curve* is top-1 of each filtered network divided by top-1 of the
unfiltered network on the same test set, over the normalised alpha grid
(ALPHA_GRID: 25 points, 0 = the layer's min weight, 1 its max). The
*baseline* is the share of the filtered weights the filter leaves as they
were: 1 - changed / weights of the variants table, i.e. the paper's "number
of parameters filtered" turned into the share that survives, counted by the
engine from the variant itself (a weight that was exactly 0 before filtering
counts as surviving: filtering cannot remove it, and the authors' count of
zeros would have counted it as removed). For layer "all" it is the share
over every Conv/Linear weight of the network. A network whose accuracy falls
exactly as fast as its weights are removed is on its baseline.

The paper integrates (accuracy - baseline) over alpha. Unchanged accuracy
then scores the share of weights the filter removes, so a pulse (a band
1/25 wide) scores about 0.04 and is "robust" by construction while a
high-pass or low-pass starts near 0.5. Here each integral is divided by
what the filter removes, R = integral of (1 - baseline), and shifted so
that an unharmed network scores 0:
    score_clean       = integral of (clean - baseline) / R - 1
                      = integral of (clean - 1) / R
    score_adversarial = integral of (adversarial - 1) / R
    score_difference  = integral of (adversarial - clean) / R
(Simpson integrals, scipy.integrate.simpson, over the normalised alpha in
[0, 1]; clean and adversarial are the normalised accuracy curves). A score
is the change of normalised accuracy per share of weights removed: 0 when
filtering changes nothing, -1 on the paper's baseline (accuracy falls as
fast as weights go), comparable across filters and layers. The paper's
classes, in its words "lowers", "leaves unchanged within a tolerance",
"raises" performance, read: fragile where score < -tol and the curve
somewhere falls below 1 - tol; antifragile where score > tol and the curve
somewhere rises above 1 + tol (so antifragile means that filtering did
raise accuracy beyond the tolerance); robust otherwise. For the difference
score the curve is adversarial - clean against -tol and +tol. A filter that
removes nothing (R = 0) or a test set on which the unfiltered network gets
nothing right has no score: NaN, its class missing.

The alpha grid runs upward for every filter (the authors ran the low-pass
threshold from max down to min), so a score's sign means the same for all
three filters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.integrate import simpson

from lesion import files, metrics
from lesion.kinds import PREDICTIONS, VARIANTS
from lesion.studies.filtering import kinds

POINTS = 25  # thresholds per layer and filter, min to max (the paper's grid)
ALPHA_GRID: tuple[float, ...] = tuple(i / (POINTS - 1) for i in range(POINTS))
CLASSES = ("fragile", "robust", "antifragile")
SCORES = ("clean", "adversarial", "difference")
SCORE_COLUMNS = ["dataset", "model", "layer", "filter", "epoch", "removed", "score_clean",
                 "score_adversarial", "score_difference", "class_clean", "class_adversarial",
                 "class_difference", "peak_clean", "peak_adversarial", "peak_difference",
                 "trough_clean", "trough_adversarial", "trough_difference"]


def check_tol(tol: float) -> float:
    if not (isinstance(tol, int | float) and 0 <= tol < math.inf):
        raise ValueError(f"tol = {tol!r} is out of range; expected a finite number >= 0")
    return float(tol)


def classify(score: float, tol: float, *, peak: float, trough: float,
             level: float = 1.0) -> str | None:
    """fragile where `score` < -tol and the curve's `trough` < level - tol; antifragile
    where `score` > tol and its `peak` > level + tol; robust otherwise; None for a NaN score.

    `level` is where the curve of an unharmed network lies: 1 for a normalised
    accuracy, 0 for the adversarial - clean difference. `tol` is checked by the
    caller (scores).
    """
    if math.isnan(score):
        return None
    if score < -tol and trough < level - tol:
        return "fragile"
    if score > tol and peak > level + tol:
        return "antifragile"
    return "robust"


def integral(levels: Sequence[float], values: Sequence[float]) -> float:
    """Simpson's integral of `values` over the normalised alphas `levels` (sorted upward)."""
    x, y = np.asarray(levels, dtype=float), np.asarray(values, dtype=float)
    if len(x) != len(y) or len(x) < 3 or np.any(np.diff(x) <= 0):
        raise ValueError(f"expected at least 3 increasing alphas with one value each; got "
                         f"{len(x)} alphas and {len(y)} values")
    return float(simpson(y, x=x))


def filtering_metrics(dataset: str, model: str,
                      epochs: Mapping[int, tuple[str, Mapping[str, tuple[str, str]]]]
                      ) -> pd.DataFrame:
    """The long metrics table of the filtering sweep, with columns `epoch` and `testset`.

    `epochs` maps an epoch to (its variants table, {test set: (unfiltered
    predictions, filtered predictions)}); the rows are lesion.metrics'
    (top1, top5, loss, agreement, nonfinite of every variant, and the
    unfiltered network as perturbation `none`), per epoch and test set.
    """
    frames = []
    for epoch, (variants, testsets) in sorted(epochs.items()):
        table = files.read_table(variants, VARIANTS)
        frames.append(checkpoint_metrics(dataset, model, epoch, table, {
            testset: (files.read_table(none, PREDICTIONS), files.read_table(predictions, PREDICTIONS))
            for testset, (none, predictions) in testsets.items()}))
    return pd.concat(frames, ignore_index=True)


def checkpoint_metrics(dataset: str, model: str, epoch: int, variants: pa.Table,
                       testsets: Mapping[str, tuple[pa.Table, pa.Table]]) -> pd.DataFrame:
    """filtering_metrics' rows of one checkpoint, from its tables in memory: `testsets` maps
    a test set to (unfiltered predictions, filtered predictions)."""
    frames = [metrics.study_metrics(dataset, model, none, [(variants, predictions)], testset)
              .assign(epoch=int(epoch)) for testset, (none, predictions) in testsets.items()]
    out = pd.concat(frames, ignore_index=True)
    order = ["dataset", "model", "epoch", "testset", *[k for k in metrics.KEYS
                                                       if k not in ("dataset", "model", "testset")]]
    return out[order + ["metric", "value"]].astype({"epoch": "int32"})


def curves(long: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """Per (epoch, testset, layer, filter, level): top1, the unfiltered top1, the normalised
    accuracy and the baseline (share of weights left as they were).

    `long` is filtering_metrics' table, `variants` the variants tables of all
    epochs with a column `epoch`.
    """
    top1 = long[long["metric"] == "top1"]
    unfiltered = top1[top1["perturbation"] == "none"].set_index(["epoch", "testset"])["value"]
    filtered = top1[top1["perturbation"] != "none"].rename(columns={"value": "top1",
                                                                    "perturbation": "filter"})
    survive = variants.assign(baseline=1.0 - variants["changed"] / variants["weights"])
    out = filtered.merge(survive[["epoch", "variant", "baseline"]], on=["epoch", "variant"],
                         how="left", validate="many_to_one")
    if out["baseline"].isna().any():
        missing = out.loc[out["baseline"].isna(), "variant"].iloc[0]
        raise files.InputFileError(f"variant {missing} has predictions but no variants row; "
                                   "expected the variants table of the same sweep")
    out["top1_unfiltered"] = [unfiltered[(e, t)] for e, t in zip(out["epoch"], out["testset"],
                                                                 strict=True)]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["normalised"] = np.where(out["top1_unfiltered"] > 0,
                                     out["top1"] / out["top1_unfiltered"], np.nan)
    columns = ["dataset", "model", "epoch", "testset", "layer", "filter", "level", "top1",
               "top1_unfiltered", "normalised", "baseline"]
    return out[columns].sort_values(["epoch", "testset", "layer", "filter", "level"],
                                    kind="stable").reset_index(drop=True)


def scores(table: pd.DataFrame, *, clean: str, adversarial: str, tol: float) -> pd.DataFrame:
    """The three scores and their classes per (layer, filter, epoch) from curves' table.

    `clean` and `adversarial` name the two test sets (e.g. "clean", "fgsm").
    """
    check_tol(tol)
    found = sorted(set(table["testset"]))
    for name in (clean, adversarial):
        if name not in found:
            raise ValueError(f"test set {name!r} is not in the curves; expected one of {found}")
    rows = []
    keys = ["dataset", "model", "layer", "filter", "epoch"]
    for key, group in table.groupby(keys, sort=False):
        by = {t: g.sort_values("level") for t, g in group.groupby("testset")}
        c, a = by[clean], by[adversarial]
        if list(c["level"]) != list(a["level"]):
            raise ValueError(f"{dict(zip(keys, key, strict=True))}: the clean and adversarial "
                             "curves have different alphas; expected the same grid")
        level, base = c["level"].to_numpy(), c["baseline"].to_numpy()
        curve = {"clean": c["normalised"].to_numpy(), "adversarial": a["normalised"].to_numpy()}
        curve["difference"] = curve["adversarial"] - curve["clean"]
        unharmed = {"clean": 1.0, "adversarial": 1.0, "difference": 0.0}
        removed = integral(level, 1.0 - base)
        row = {**dict(zip(keys, key, strict=True)), "removed": removed}
        for s, y in curve.items():
            value = integral(level, y - unharmed[s]) / removed if removed > 0 else math.nan
            peak, trough = float(np.max(y)), float(np.min(y))
            row.update({f"score_{s}": value, f"peak_{s}": peak, f"trough_{s}": trough,
                        f"class_{s}": classify(value, tol, peak=peak, trough=trough,
                                               level=unharmed[s])})
        rows.append(row)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS).astype({"epoch": "int32"})


def selected_layers(table: pd.DataFrame, *, epoch: int, filter: str, score: str,
                    classes: Iterable[str]) -> list[str]:
    """The weight layers (not "all") whose `score` class under `filter` at `epoch` is in
    `classes`: the parameter sets selective retraining trains."""
    if score not in SCORES:
        raise ValueError(f"score {score!r} is unknown; expected one of {list(SCORES)}")
    wanted = set(classes)
    unknown = sorted(wanted - set(CLASSES))
    if unknown:
        raise ValueError(f"class {unknown[0]!r} is unknown; expected some of {list(CLASSES)}")
    here = table[(table["epoch"] == epoch) & (table["filter"] == filter)
                 & (table["layer"] != "all")]
    if here.empty:
        raise ValueError(f"no scores for filter {filter!r} at epoch {epoch}; expected one of "
                         f"the filters {sorted(set(table['filter']))} and epochs "
                         f"{sorted(set(table['epoch']))} of the scores table")
    return [layer for layer, cls in zip(here["layer"], here[f"class_{score}"], strict=True)
            if cls in wanted]


def write_scores(dataset: str, model: str, *, epochs: Mapping[int, tuple[str, Mapping]],
                 clean: str, adversarial: str, tol: float, metrics_out: str, curves_out: str,
                 scores_out: str) -> None:
    """The scores step: metrics, curves and scores of one model's filtering sweep."""
    long = filtering_metrics(dataset, model, epochs)
    variants = pd.concat([files.read_table(v, VARIANTS).to_pandas().assign(epoch=int(e))
                          for e, (v, _) in epochs.items()], ignore_index=True)
    table = curves(long, variants)
    result = scores(table, clean=clean, adversarial=adversarial, tol=tol)
    meta = {"clean": clean, "adversarial": adversarial, "tol": repr(tol)}
    files.write_table(pa.Table.from_pandas(long, preserve_index=False), metrics_out,
                      kind=kinds.METRICS)
    files.write_table(pa.Table.from_pandas(table, preserve_index=False), curves_out,
                      kind=kinds.CURVES)
    files.write_table(pa.Table.from_pandas(result, preserve_index=False), scores_out, meta,
                      kind=kinds.SCORES)
