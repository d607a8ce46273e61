"""Figures of the weight-space study, from its tables alone (never imports torch).

`accuracy`: each property's meta-classifier accuracy (bars, 95% interval
over meta-test nets) beside chance (the majority share of the meta-test
set). `snapshots`: each property's accuracy against the snapshot index, from
initialisation (0) to the end, chance dashed.
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


def accuracy_figure(meta: pd.DataFrame) -> plt.Figure:
    meta = meta.dropna(subset=["accuracy"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * max(len(meta), 1), 3.6))
    x = range(len(meta))
    ax.bar(x, meta["accuracy"], yerr=meta["ci95"], color="tab:blue", capsize=3, label="meta-classifier")
    ax.scatter(x, meta["chance"], marker="_", s=600, color="k", zorder=3, label="chance")
    ax.set_xticks(list(x), meta["property"], rotation=30, ha="right")
    ax.set(ylim=(0, 1), ylabel="meta-test accuracy")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def snapshots_figure(per_snapshot: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (prop, line) in enumerate(per_snapshot.groupby("property", sort=False)):
        color = f"C{i % 10}"
        ax.plot(line["snapshot"], line["accuracy"], "o-", ms=3, color=color, label=prop)
        ax.axhline(line["chance"].iloc[0], color=color, ls="--", lw=0.8)
    ax.set(xlabel="snapshot (0: initialisation)", ylabel="meta-test accuracy", ylim=(0, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, ncol=2)
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
