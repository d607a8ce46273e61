"""Figures of the weight-space study, from its tables alone (never imports torch).

`accuracy`: each property's two meta-classifiers (1-D CNN on weight slices,
random forest on per-tensor statistics) side by side (bars, 95% interval
over meta-test nets) beside chance (the majority share of the meta-test
set), and the learning rate's regression (R², 95% bootstrap interval; 0 is
predicting the meta-train mean). `snapshots`: each property's accuracy
against the snapshot index, from initialisation (0) to the end, one panel
per classifier, chance dashed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from lesion import files
from lesion.figures import (
    ACCURACY,
    NEUTRAL,
    PALETTE,
    accuracy_axis,
    colours,
    legend,
    markers,
    plt,
    save,
    suptitle,
    title,
)
from lesion.studies.zoo import kinds

FIGURES = ("accuracy", "snapshots")


CLASSIFIER_COLORS = {"cnn": PALETTE[0], "statistics": PALETTE[4]}  # blue, orange
CLASSIFIER_NAMES = {"cnn": "1-D CNN on weight slices", "statistics": "random forest on tensor statistics"}


def _dataset(path: str | os.PathLike) -> str:
    """The dataset of a zoo table: its path is results/{dataset}/zoo/..."""
    parent = Path(path).resolve().parent
    return parent.parent.name if parent.name == "zoo" else "?"


def accuracy_figure(meta: pd.DataFrame, dataset: str = "?",
                    accuracy: tuple[float, float] = ACCURACY) -> plt.Figure:
    meta = meta.assign(**{k: v for k, v in (("classifier", "cnn"), ("task", "classification"),
                                             ("r2", float("nan"))) if k not in meta})
    rates = meta[meta["task"] == "regression"].dropna(subset=["r2"])
    meta = meta[meta["task"] == "classification"].dropna(subset=["accuracy"])
    props = list(dict.fromkeys(meta["property"]))
    names = [c for c in CLASSIFIER_COLORS if c in set(meta["classifier"])]
    width = 0.8 / max(len(names), 1)
    fig, axes = plt.subplots(1, 2, figsize=(3.6 + 0.6 * max(len(props), 1), 3.2),
                             gridspec_kw={"width_ratios": [max(len(props), 1), 1]}, squeeze=False,
                             layout="constrained")
    ax, rate_ax = axes[0]
    for k, name in enumerate(names):
        part = meta[meta["classifier"] == name].set_index("property").reindex(props)
        x = [i + (k - (len(names) - 1) / 2) * width for i in range(len(props))]
        ax.bar(x, part["accuracy"], width, yerr=part["ci95"], color=CLASSIFIER_COLORS[name], capsize=2,
               label=CLASSIFIER_NAMES[name])
    # Chance: one dashed line across each property's bars, wider than any whisker's cap.
    chance = meta.drop_duplicates("property").set_index("property").reindex(props)["chance"]
    ax.hlines(chance, [i - 0.48 for i in range(len(props))], [i + 0.48 for i in range(len(props))],
              colors=NEUTRAL, linestyles="--", lw=1.2, zorder=3, label="chance (majority share)")
    ax.set_xticks(range(len(props)), props, rotation=30, ha="right")
    ax.set(ylabel="meta-test accuracy", title="properties (classification)")
    accuracy_axis(ax, accuracy, pad=0)
    if len(rates):
        r = rates.iloc[0]
        rate_ax.bar([0], [r["r2"]], 0.6, yerr=[[r["r2"] - r["r2_low"]], [r["r2_high"] - r["r2"]]],
                    color=CLASSIFIER_COLORS["statistics"], capsize=3)
        rate_ax.axhline(0, color="k", lw=0.8)
        rate_ax.set_xticks([0], ["learning rate\n(log10)"])
        rate_ax.set(ylim=(min(-0.2, r["r2_low"] - 0.05), 1), ylabel="meta-test $R^2$", xlim=(-0.8, 0.8),
                    title="regression")
    else:
        rate_ax.set_axis_off()
    legend(fig, [ax], where="bottom")
    suptitle(fig, title(dataset, "weight-space zoo", "what meta-classifiers read from the weights"))
    return fig


def snapshots_figure(per_snapshot: pd.DataFrame, dataset: str = "?",
                     accuracy: tuple[float, float] = ACCURACY) -> plt.Figure:
    if "classifier" not in per_snapshot:
        per_snapshot = per_snapshot.assign(classifier="cnn")
    names = [c for c in CLASSIFIER_COLORS if c in set(per_snapshot["classifier"])] or ["cnn"]
    fig, axes = plt.subplots(1, len(names), figsize=(2.0 + 3.0 * len(names), 2.9), sharey=True,
                             squeeze=False, layout="constrained")
    props = list(dict.fromkeys(per_snapshot["property"]))
    colour, mark = colours(props), markers(props)
    for ax, name in zip(axes[0], names, strict=True):
        part = per_snapshot[per_snapshot["classifier"] == name]
        for prop, line in part.groupby("property", sort=False):
            ax.plot(line["snapshot"], line["accuracy"], marker=mark[prop], ms=3, color=colour[prop],
                    label=prop)
        # Chance is shared by every property with as many classes: one neutral line each.
        for i, level in enumerate(sorted(set(part["chance"].round(6)))):
            ax.axhline(level, color=NEUTRAL, ls="--", lw=0.8, zorder=1,
                       label="chance (majority share)" if i == 0 else None)
        ax.set(xlabel="snapshot (0: initialisation)", title=CLASSIFIER_NAMES[name])
        accuracy_axis(ax, accuracy, pad=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("meta-test accuracy")
    legend(fig, list(axes[0]), title="property")
    suptitle(fig, title(dataset, "weight-space zoo", "meta-test accuracy along training"))
    return fig


def figures(*, meta: str | os.PathLike, snapshots: str | os.PathLike,
            out: str | os.PathLike, svg: bool = False,
            accuracy: tuple[float, float] = ACCURACY) -> None:
    """Both figures, {out}/{name}.png and .pdf (and .svg when `svg`), their accuracy axes
    over `accuracy`."""
    dataset = _dataset(meta)
    drawn = {"accuracy": accuracy_figure(files.read_table(meta, kinds.META).to_pandas(), dataset,
                                           accuracy),
             "snapshots": snapshots_figure(
                 files.read_table(snapshots, kinds.META_SNAPSHOTS).to_pandas(), dataset, accuracy)}
    for name, fig in drawn.items():
        save(fig, os.path.join(out, f"{name}.png"), os.path.join(out, f"{name}.pdf"), svg=svg)
