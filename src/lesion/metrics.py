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
import pyarrow.compute as pc
from scipy import stats

from lesion import files, kinds
from lesion.files import InputFileError

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


def _ids(table: pa.Table) -> list[str]:
    return pc.unique(table.column("variant")).cast(pa.string()).to_pylist()


def _one(table: pa.Table, path: str, column: str, expected: str | None = None) -> str:
    """The one value of `column` in a variants table; refused unless it is `expected`."""
    found = sorted(set(pc.unique(table.column(column)).to_pylist()))
    if len(found) != 1 or (expected is not None and found[0] != expected):
        wanted = f"{column} {expected!r}, as --{column} says" if expected else f"one {column}"
        raise InputFileError(f"{path}: a variants table of {column} {found}; expected {wanted}")
    return found[0]


def matched_sweeps(dataset: str, model: str, clean: tuple[str, pa.Table], variants: list[str],
                   predictions: list[str]) -> list[tuple[pa.Table, pa.Table]]:
    """(variants table, predictions table) of every sweep, matched by their variant ids.

    Never by position: a variant id names its (model, layer, perturbation, level,
    draw), so a predictions table belongs to the variants table holding exactly its
    ids. Every table is checked to be of its kind, of `dataset` and `model`, one
    operator each (on one or more layers: a sweep step's table), and predicted on
    the clean table's test images; a mismatch names both files.
    """
    clean_path, clean_table = clean
    clean_ids = _ids(clean_table)
    if clean_ids != [model]:
        raise InputFileError(f"{clean_path}: the predictions of {clean_ids}, but --model is "
                             f"{model!r}; expected the clean predictions of {model!r} "
                             "(predictions/none.parquet)")
    images = clean_table.num_rows
    owner: dict[str, str] = {}
    read: dict[str, tuple[pa.Table, set[str]]] = {}
    for path in variants:
        table = files.read_table(path, kinds.VARIANTS)
        _one(table, path, "dataset", dataset)
        _one(table, path, "model", model)
        _one(table, path, "perturbation")  # one operator; any of the model's layers
        ids = table.column("variant").to_pylist()
        for i in ids:
            if i in owner:
                raise InputFileError(f"{path} and {owner[i]}: both hold variant {i!r}; expected "
                                     "each sweep's variants table once")
            owner[i] = path
        read[path] = (table, set(ids))
    pairs: dict[str, tuple[pa.Table, pa.Table, str]] = {}
    for path in predictions:
        table = files.read_table(path, kinds.PREDICTIONS)
        ids = set(_ids(table))
        stray = sorted(i for i in ids if i not in owner)
        if stray:
            raise InputFileError(f"{path}: predictions of variants no --variants table holds "
                                 f"(e.g. {stray[0]!r}); expected the predictions of the sweeps "
                                 f"given: {variants}")
        homes = sorted({owner[i] for i in ids})
        if len(homes) != 1:
            raise InputFileError(f"{path}: predictions of the variants of several tables "
                                 f"({homes}); expected those of one sweep")
        home = homes[0]
        if home in pairs:
            raise InputFileError(f"{pairs[home][2]} and {path}: both are predictions of {home}; "
                                 "expected one predictions table per variants table")
        missing = sorted(read[home][1] - ids)
        if missing:
            raise InputFileError(f"{path}: predictions of {len(ids)} of the "
                                 f"{len(read[home][1])} variants of {home} (none of "
                                 f"{missing[0]!r}); expected every variant (rebuild the sweep)")
        if table.num_rows != len(ids) * images:
            raise InputFileError(f"{path}: {table.num_rows / len(ids):g} images per variant, "
                                 f"{clean_path} has {images}; expected predictions of the same "
                                 "test split")
        pairs[home] = (read[home][0], table, path)
    return [(pairs[v][0], pairs[v][1]) for v in variants]


def write_metrics(dataset: str, model: str, *, clean: str | list[str], variants: list[str],
                  predictions: list[str], out: str, summary_out: str, summary_csv: str,
                  testsets: list[str] | None = None) -> None:
    """The metrics step: `metrics.parquet`, `metrics_summary.parquet` and `.csv`.

    Per test set (`testsets`, default just `clean`) one clean predictions table
    and one predictions table per variants table, test set after test set;
    within a test set each predictions table is matched to its variants table
    by their variant ids (matched_sweeps), in any order.
    """
    testsets = testsets or ["clean"]
    cleans = [clean] if isinstance(clean, str) else list(clean)
    if len(cleans) != len(testsets) or len(predictions) != len(variants) * len(testsets):
        raise ValueError(f"got {len(variants)} variants tables, {len(cleans)} clean and "
                         f"{len(predictions)} sweep predictions tables for test sets {testsets}; "
                         "expected one clean table per test set and one predictions table per "
                         "variants table and test set, test set after test set")
    frames = []
    for i, testset in enumerate(testsets):
        these = predictions[i * len(variants):(i + 1) * len(variants)]
        clean_table = files.read_table(cleans[i], kinds.PREDICTIONS)
        sweeps = matched_sweeps(dataset, model, (cleans[i], clean_table), variants, these)
        frames.append(study_metrics(dataset, model, clean_table, sweeps, testset))
    long = pd.concat(frames, ignore_index=True)
    summary = summarise(long)
    files.write_table(pa.Table.from_pandas(long, preserve_index=False), out,
                      kind=kinds.METRICS)
    files.write_table(pa.Table.from_pandas(summary, preserve_index=False), summary_out,
                      kind=kinds.SUMMARY)
    with files.atomic_path(summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
