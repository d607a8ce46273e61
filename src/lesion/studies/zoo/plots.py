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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lesion import files  # noqa: E402
from lesion.figures import save  # noqa: E402
from lesion.studies.zoo import kinds  # noqa: E402

FIGURES = ("accuracy", "snapshots")


CLASSIFIER_COLORS = {"cnn": "tab:blue", "statistics": "tab:orange"}
CLASSIFIER_NAMES = {"cnn": "1-D CNN on weight slices", "statistics": "random forest on tensor statistics"}


def accuracy_figure(meta: pd.DataFrame) -> plt.Figure:
    meta = meta.assign(**{k: v for k, v in (("classifier", "cnn"), ("task", "classification"),
                                             ("r2", float("nan"))) if k not in meta})
    rates = meta[meta["task"] == "regression"].dropna(subset=["r2"])
    meta = meta[meta["task"] == "classification"].dropna(subset=["accuracy"])
    props = list(dict.fromkeys(meta["property"]))
    names = [c for c in CLASSIFIER_COLORS if c in set(meta["classifier"])]
    width = 0.8 / max(len(names), 1)
    fig, axes = plt.subplots(1, 2, figsize=(2.5 + 0.9 * max(len(props), 1), 3.6),
                             gridspec_kw={"width_ratios": [max(len(props), 1), 1]}, squeeze=False)
    ax, rate_ax = axes[0]
    for k, name in enumerate(names):
        part = meta[meta["classifier"] == name].set_index("property").reindex(props)
        x = [i + (k - (len(names) - 1) / 2) * width for i in range(len(props))]
        ax.bar(x, part["accuracy"], width, yerr=part["ci95"], color=CLASSIFIER_COLORS[name], capsize=2,
               label=CLASSIFIER_NAMES[name])
        ax.scatter(x, part["chance"], marker="_", s=200, color="k", zorder=3,
                   label="chance" if k == 0 else None)
    ax.set_xticks(range(len(props)), props, rotation=30, ha="right")
    ax.set(ylim=(0, 1), ylabel="meta-test accuracy")
    ax.legend(loc="upper left", fontsize=7)
    if len(rates):
        r = rates.iloc[0]
        rate_ax.bar([0], [r["r2"]], 0.6, yerr=[[r["r2"] - r["r2_low"]], [r["r2_high"] - r["r2"]]],
                    color=CLASSIFIER_COLORS["statistics"], capsize=3)
        rate_ax.axhline(0, color="k", lw=0.8)
        rate_ax.set_xticks([0], ["learning rate\n(log10)"])
        rate_ax.set(ylim=(min(-0.2, r["r2_low"] - 0.05), 1), ylabel="meta-test R²", xlim=(-0.8, 0.8))
    else:
        rate_ax.set_axis_off()
    fig.tight_layout()
    return fig


def snapshots_figure(per_snapshot: pd.DataFrame) -> plt.Figure:
    if "classifier" not in per_snapshot:
        per_snapshot = per_snapshot.assign(classifier="cnn")
    names = [c for c in CLASSIFIER_COLORS if c in set(per_snapshot["classifier"])] or ["cnn"]
    fig, axes = plt.subplots(1, len(names), figsize=(0.5 + 4.5 * len(names), 3.6), sharey=True,
                             squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = per_snapshot[per_snapshot["classifier"] == name]
        for i, (prop, line) in enumerate(part.groupby("property", sort=False)):
            color = f"C{i % 10}"
            ax.plot(line["snapshot"], line["accuracy"], "o-", ms=3, color=color, label=prop)
            ax.axhline(line["chance"].iloc[0], color=color, ls="--", lw=0.8)
        ax.set(xlabel="snapshot (0: initialisation)", ylim=(0, 1), title=CLASSIFIER_NAMES[name])
        ax.title.set_fontsize(9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("meta-test accuracy")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def figures(*, meta: str | os.PathLike, snapshots: str | os.PathLike,
            out: str | os.PathLike) -> None:
    """Both figures, {out}/{name}.png and .pdf."""
    drawn = {"accuracy": accuracy_figure(files.read_table(meta, kinds.META).to_pandas()),
             "snapshots": snapshots_figure(
                 files.read_table(snapshots, kinds.META_SNAPSHOTS).to_pandas())}
    for name, fig in drawn.items():
        save(fig, os.path.join(out, f"{name}.png"), os.path.join(out, f"{name}.pdf"))
