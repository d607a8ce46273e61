"""Figures of the filtering study, from its tables alone (never imports torch).

heat map (one per filter): normalised accuracy over layer x alpha, clean and
adversarial side by side, one row per epoch. class map: layer x epoch
coloured by class, one panel per (score, filter): the paper's main picture.
retraining: clean and adversarial accuracy per way of retraining (mean and 95%
interval over the replicates).
invariance: which layers keep their class over all epochs, for every model
of the study (across datasets, compare the tables of several studies).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from lesion import files
from lesion.figures import (
    ACCURACY,
    DIVERGING,
    PALETTE,
    accuracy_axis,
    centred,
    legend,
    plt,
    save,
    suptitle,
    title,
)
from lesion.intervals import t_interval
from lesion.studies.filtering import kinds
from lesion.studies.filtering.scores import CLASSES, SCORES

# The retraining table's accuracies and how the figure names them.
RETRAINING_MEASURES = {"top1_clean": "clean", "top1_adversarial": "FGSM against itself",
                       "top1_original_adversarial": "the checkpoint's FGSM set"}
# Okabe & Ito's colour-blind-safe vermillion and blue at the two ends, grey between
# (they differ in lightness too, so that they stay apart in grey print).
CLASS_COLOURS = {"fragile": PALETTE[1], "robust": "#bdbdbd", "antifragile": PALETTE[0]}
VARIES = "#ffffff"  # a class that changes over the epochs (invariance) or is missing


def _layers(frame: pd.DataFrame) -> list[str]:
    """Layers in forward order (conv before fc, by number), "all" last."""
    def key(name: str):
        kind = name.rstrip("0123456789")
        return (name == "all", kind != "conv", int(name[len(kind):] or 0))
    return sorted(set(frame["layer"]), key=key)


def heat_map(curves: pd.DataFrame, filter: str, *, clean: str, adversarial: str) -> plt.Figure:
    """Normalised accuracy (layer x alpha) under one filter, per epoch and test set."""
    here = curves[curves["filter"] == filter]
    epochs, layers = sorted(set(here["epoch"])), _layers(here)
    values = here["normalised"].to_numpy(dtype=float)
    high = max(1.0, float(np.nanmax(values))) if np.isfinite(values).any() else 1.0
    low = min(1.0, float(np.nanmin(values))) if np.isfinite(values).any() else 0.0
    norm = centred(min(low, 0.0), high, 1.0)  # white at 1: the filter changed nothing
    fig, axes = plt.subplots(len(epochs), 2, figsize=(6.4, 0.9 + (0.45 + 0.22 * len(layers)) * len(epochs)),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for row, epoch in enumerate(epochs):
        for col, testset in enumerate((clean, adversarial)):
            ax = axes[row][col]
            panel = here[(here["epoch"] == epoch) & (here["testset"] == testset)]
            grid = panel.pivot(index="layer", columns="level", values="normalised").reindex(layers)
            image = ax.imshow(grid.to_numpy(), aspect="auto", cmap=DIVERGING, norm=norm,
                              extent=(0, 1, len(layers) - 0.5, -0.5), interpolation="nearest")
            ax.set_yticks(range(len(layers)), layers)
            ax.set_title(f"epoch {epoch}, {testset} test set")
            if row == len(epochs) - 1:
                ax.set_xlabel(r"normalised $\alpha$")
    fig.colorbar(image, ax=axes, label="top-1 / unfiltered top-1\n(1: unchanged)", shrink=0.8)
    first = curves.iloc[0]
    suptitle(fig, title(first["dataset"], first["model"],
                       f"top-1 under the {filter} filter per layer, relative to unfiltered"))
    return fig


def class_map(scores: pd.DataFrame) -> plt.Figure:
    """Class of every layer at every epoch, per score (rows) and filter (columns)."""
    filters = list(dict.fromkeys(scores["filter"]))
    epochs, layers = sorted(set(scores["epoch"])), _layers(scores)
    cmap = ListedColormap([VARIES, *(CLASS_COLOURS[c] for c in CLASSES)])
    code = {None: 0, **{c: i + 1 for i, c in enumerate(CLASSES)}}
    fig, axes = plt.subplots(len(SCORES), len(filters),
                             figsize=(2.4 + 0.35 * len(epochs) * len(filters) + 0.6 * len(filters),
                                      0.9 + (0.4 + 0.2 * len(layers)) * len(SCORES)),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for row, score in enumerate(SCORES):
        for col, name in enumerate(filters):
            ax = axes[row][col]
            here = scores[scores["filter"] == name]
            grid = here.pivot(index="layer", columns="epoch", values=f"class_{score}")
            grid = grid.reindex(index=layers, columns=epochs)
            values = np.vectorize(lambda c: code.get(c if isinstance(c, str) else None, 0))(
                grid.to_numpy(dtype=object))
            ax.imshow(values, cmap=cmap, vmin=0, vmax=len(CLASSES), aspect="auto",
                      interpolation="nearest")
            ax.set_xticks(range(len(epochs)), [str(e) for e in epochs], fontsize=7)
            ax.set_yticks(range(len(layers)), layers, fontsize=7)
            if row == 0:
                ax.set_title(f"{name} filter")
            if col == 0:
                ax.set_ylabel(f"{score}\nscore")
            if row == len(SCORES) - 1:
                ax.set_xlabel("epoch")
    fig.legend(handles=[Patch(color=CLASS_COLOURS[c], label=c) for c in CLASSES]
               + [Patch(facecolor=VARIES, edgecolor="0.5", label="missing")],
               loc="outside right center", title="class")
    first = scores.iloc[0]
    suptitle(fig, title(first["dataset"], first["model"], "class of each layer per checkpoint"))
    return fig


def retraining_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (epoch, way, measure): mean top-1 over the replicates and its 95% t interval."""
    rows = []
    for (epoch, way), group in table.groupby(["epoch", "retrained"], sort=False):
        for column in RETRAINING_MEASURES:
            mean, low, high = t_interval(list(group[column]))
            rows.append({"epoch": epoch, "retrained": way, "measure": column, "mean": mean,
                         "low": low, "high": high, "replicates": len(group),
                         "warning": group["warning"].iloc[0]})
    return pd.DataFrame(rows)


def retraining_figure(table: pd.DataFrame, accuracy: tuple[float, float] = ACCURACY) -> plt.Figure:
    """Clean, regenerated-FGSM and original-FGSM accuracy per way (mean and 95% interval
    over the replicates), one panel per checkpoint; the accuracy axis over `accuracy`."""
    summary = retraining_summary(table)
    epochs = sorted(set(summary["epoch"]))
    fig, axes = plt.subplots(1, len(epochs), figsize=(2.8 * len(epochs) + 3.0, 2.9), squeeze=False,
                             sharey=True, layout="constrained")
    for col, epoch in enumerate(epochs):
        ax = axes[0][col]
        here = summary[summary["epoch"] == epoch]
        ways = list(dict.fromkeys(here["retrained"]))
        x = np.arange(len(ways))
        for i, (column, label) in enumerate(RETRAINING_MEASURES.items()):
            bars = here[here["measure"] == column].set_index("retrained").loc[ways]
            error = np.vstack([bars["mean"] - bars["low"], bars["high"] - bars["mean"]])
            ax.bar(x + (i - 1) * 0.27, bars["mean"], width=0.27, label=label, color=PALETTE[i],
                   yerr=np.nan_to_num(error), capsize=2)
        warned = here.drop_duplicates("retrained").set_index("retrained")["warning"]
        ax.set_xticks(x, [f"{w}\n= {'none' if 'no layer' in warned[w] else 'all'}"
                          if warned[w] else w for w in ways])
        ax.set_title(f"retrained from epoch {epoch}")
        accuracy_axis(ax, accuracy, pad=0)
    axes[0][0].set_ylabel("top-1 accuracy")
    legend(fig, [axes[0][0]], title="test set")
    first = table.iloc[0]
    suptitle(fig, title(first["dataset"], first["model"],
                       "selective retraining (mean, 95% interval)"))
    return fig


def invariance(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, filter, score): the class every epoch agrees on, or "varies";
    `share` is the share of epochs in the most common class."""
    rows = []
    for (model, layer, name), group in scores.groupby(["model", "layer", "filter"], sort=False):
        for score in SCORES:
            found = group[f"class_{score}"].fillna("missing")
            counts = found.value_counts()
            rows.append({"dataset": group["dataset"].iloc[0], "model": model, "layer": layer,
                         "filter": name, "score": score,
                         "class": counts.index[0] if len(counts) == 1 else "varies",
                         "share": float(counts.iloc[0] / len(found)), "epochs": len(found)})
    return pd.DataFrame(rows)


def invariance_figure(summary: pd.DataFrame) -> plt.Figure:
    """Rows (model, layer), columns (score, filter): the invariant class, white where it varies."""
    models = list(dict.fromkeys(summary["model"]))
    index = [(m, layer) for m in models for layer in _layers(summary[summary["model"] == m])]
    filters = list(dict.fromkeys(summary["filter"]))
    columns = [(s, f) for s in SCORES for f in filters]
    code = {c: i + 1 for i, c in enumerate(CLASSES)}
    values = np.zeros((len(index), len(columns)))
    share = np.full((len(index), len(columns)), np.nan)
    lookup = summary.set_index(["model", "layer", "score", "filter"])
    for i, (m, layer) in enumerate(index):
        for j, (s, f) in enumerate(columns):
            if (m, layer, s, f) in lookup.index:
                row = lookup.loc[(m, layer, s, f)]
                values[i, j] = code.get(row["class"], 0)
                share[i, j] = row["share"]
    cmap = ListedColormap([VARIES, *(CLASS_COLOURS[c] for c in CLASSES)])
    fig, ax = plt.subplots(figsize=(2.5 + 0.55 * len(columns), 1.4 + 0.25 * len(index)),
                           layout="constrained")
    ax.imshow(values, cmap=cmap, vmin=0, vmax=len(CLASSES), aspect="auto",
              interpolation="nearest")
    for i in range(len(index)):
        for j in range(len(columns)):
            if not np.isnan(share[i, j]):
                ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(columns)), [f"{s}\n{f}" for s, f in columns], fontsize=7)
    ax.set_yticks(range(len(index)), [f"{m} {layer}" for m, layer in index], fontsize=7)
    fig.legend(handles=[Patch(color=CLASS_COLOURS[c], label=c) for c in CLASSES]
               + [Patch(facecolor=VARIES, edgecolor="0.5", label="varies")],
               loc="outside right center", title="class")
    ax.set_xlabel("score, filter")
    ax.set_title(title(summary["dataset"].iloc[0], ", ".join(models),
                       "class kept over all epochs\n(cell: share of epochs in the commonest class)"))
    return fig


def figures(*, curves: str, scores: str, retraining: str, filters: Sequence[str], clean: str,
            adversarial: str, out_dir: str | os.PathLike, svg: bool = False,
            accuracy: tuple[float, float] = ACCURACY) -> None:
    """The figures step of one model: heat_{filter}, class_map and retraining (PNG and PDF,
    and SVG when `svg`), the retraining's accuracy axis over `accuracy`."""
    curve_table = files.read_table(curves, kinds.CURVES).to_pandas()
    score_table = files.read_table(scores, kinds.SCORES).to_pandas()
    drawn = {f"heat_{name}": heat_map(curve_table, name, clean=clean, adversarial=adversarial)
             for name in filters}
    drawn["class_map"] = class_map(score_table)
    drawn["retraining"] = retraining_figure(files.read_table(retraining, kinds.RETRAINING).to_pandas(),
                                           accuracy)
    for name, fig in drawn.items():
        save(fig, os.path.join(out_dir, f"{name}.png"), os.path.join(out_dir, f"{name}.pdf"), svg=svg)


def write_invariance(scores: Sequence[str], *, png: str, pdf: str, csv: str,
                     svg: bool = False) -> None:
    """The invariance step: the summary over every model's scores table, figure and CSV."""
    table = pd.concat([files.read_table(s, kinds.SCORES).to_pandas() for s in scores],
                      ignore_index=True)
    summary = invariance(table)
    save(invariance_figure(summary), png, pdf, svg=svg)
    with files.atomic_path(csv) as tmp:
        summary.to_csv(tmp, index=False)
