"""Metrics of every variant from its predictions, in long ("tidy") form.

`metrics.parquet` has one row per (test set, variant, metric) with the columns
dataset, model, testset, perturbation, layer, level, draw, variant, metric,
value. `testset` is `clean` for the test split and an attack's name (e.g.
`fgsm`) for the model's adversarial set of that attack (the adversarial study).
Metrics: top1 and top5 accuracy, mean cross-entropy `loss`, and `agreement`,
the share of test images whose top-1 class equals the unperturbed model's,
and `nonfinite`, the share of test images whose output is not finite (NaN or
infinite logits, e.g. after bit flips, or logits so large that their loss
overflows; they count as wrong and are left out of the mean loss, so `loss`
is the mean over the finite ones).
The unperturbed model is perturbation `none`, layer `none`, level 0, draw 0;
`agreement` on a test set is with the unperturbed model on that same set.
`summarise` averages over draws (mean, std, 95% CI half-width, n).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from lesion import files

KEYS = ["dataset", "model", "testset", "perturbation", "layer", "level", "draw", "variant"]
VARIANT_KEYS = [k for k in KEYS if k != "testset"]  # a variants table's own columns
METRICS = ("top1", "top5", "loss", "agreement", "nonfinite")


def _top(predictions: pa.Table) -> np.ndarray:
    column = predictions.column("top5").combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), -1)


def variant_metrics(predictions: pa.Table, clean_top1: np.ndarray) -> pd.DataFrame:
    """One row per variant: top1, top5, loss, agreement, nonfinite (wide form).

    A non-finite output (NaN loss, see evaluate.summarise) counts as wrong for
    top1/top5/agreement and is left out of the mean loss.
    """
    loss = predictions.column("loss").to_numpy()
    finite = ~np.isnan(loss)
    top = _top(predictions)
    frame = pd.DataFrame({
        "variant": predictions.column("variant").to_numpy(zero_copy_only=False),
        "top1": (top[:, 0] == predictions.column("label").to_numpy()) & finite,
        "top5": (top == predictions.column("label").to_numpy()[:, None]).any(axis=1) & finite,
        "loss": loss,
        "agreement": (top[:, 0] == clean_top1[predictions.column("image").to_numpy()]) & finite,
        "nonfinite": ~finite,
    })
    return frame.groupby("variant", sort=False).mean().reset_index()


def clean_top1(clean: pa.Table) -> np.ndarray:
    """The unperturbed model's top-1 class per image index."""
    image = clean.column("image").to_numpy()
    out = np.full(image.max() + 1, -1, dtype=np.int64)
    out[image] = _top(clean)[:, 0]
    return out


def study_metrics(dataset: str, model: str, clean: pa.Table,
                  sweeps: Iterable[tuple[pa.Table, pa.Table]], testset: str = "clean") -> pd.DataFrame:
    """The long metrics table of one model on one test set: the clean model and every sweep.

    `sweeps` yields (variants table, predictions table) pairs.
    """
    reference = clean_top1(clean)
    none = variant_metrics(clean, reference).assign(
        dataset=dataset, model=model, testset=testset, perturbation="none", layer="none",
        level=0.0, draw=0)
    frames = [none]
    for variants, predictions in sweeps:
        info = variants.select(VARIANT_KEYS).to_pandas().assign(testset=testset)
        frames.append(info.merge(variant_metrics(predictions, reference), on="variant",
                                 how="left", validate="one_to_one"))
    wide = pd.concat(frames, ignore_index=True)
    long = wide.melt(id_vars=KEYS, value_vars=list(METRICS), var_name="metric")
    return long[KEYS + ["metric", "value"]].astype({"level": "float64", "draw": "int32",
                                                   "value": "float64"})


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Average over draws: mean, std, 95% CI half-width (Student t), n.

    `variant` becomes the seed study's id without `-numN`, which names the
    average over draws.
    """
    keys = ["dataset", "model", "testset", "perturbation", "layer", "level", "metric"]
    grouped = metrics.groupby(keys, sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    sem = out["std"] / np.sqrt(out["n"])
    out["ci95"] = np.where(out["n"] > 1, stats.t.ppf(0.975, out["n"] - 1) * sem, np.nan)
    out["variant"] = metrics.groupby(keys, sort=False)["variant"].first().str.replace(
        r"-num\d+$", "", regex=True).to_numpy()
    return out[["dataset", "model", "testset", "perturbation", "layer", "level", "variant",
                "metric", "mean", "std", "ci95", "n"]]


def write_metrics(dataset: str, model: str, *, clean: str | list[str], variants: list[str],
                  predictions: list[str], out: str, summary_out: str, summary_csv: str,
                  testsets: list[str] | None = None) -> None:
    """The metrics step: `metrics.parquet`, `metrics_summary.parquet` and `.csv`.

    Per test set (`testsets`, default just `clean`) one clean predictions table
    and one predictions table per variants table, test set after test set.
    """
    testsets = testsets or ["clean"]
    cleans = [clean] if isinstance(clean, str) else list(clean)
    if len(cleans) != len(testsets) or len(predictions) != len(variants) * len(testsets):
        raise ValueError(f"got {len(variants)} variants tables, {len(cleans)} clean and "
                         f"{len(predictions)} sweep predictions tables for test sets {testsets}; "
                         "expected one clean table per test set and one predictions table per "
                         "variants table and test set, test set after test set, in the same order")
    frames = []
    for i, testset in enumerate(testsets):
        these = predictions[i * len(variants):(i + 1) * len(variants)]
        sweeps = ((files.read_table(v), files.read_table(p))
                  for v, p in zip(variants, these, strict=True))
        frames.append(study_metrics(dataset, model, files.read_table(cleans[i]), sweeps, testset))
    long = pd.concat(frames, ignore_index=True)
    summary = summarise(long)
    files.write_table(pa.Table.from_pandas(long, preserve_index=False), out)
    files.write_table(pa.Table.from_pandas(summary, preserve_index=False), summary_out)
    with files.atomic_path(summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
