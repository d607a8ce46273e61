"""The layer atlas's figures: per model a layers x measures heat map, the agreement
matrices, and the studies' verdicts against relative depth (lesion.atlas's tables).

Every figure puts the fragile end in one colour: a measure is drawn as its fragility
score, the oriented value (larger = more fragile) scaled to [0, 1] across the model's
layers (1 = the model's most fragile layer by that measure; 0.5 when every layer scores
the same). Torch-free, like all plotting.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lesion import files
from lesion.atlas import AGREEMENT, ATLAS, POOLED, oriented
from lesion.figures import colours, markers, plt, save, suptitle, title

FRAGILE_MAP = "YlOrRd"  # sequential, colour-blind safe: the fragile end dark red
AGREEMENT_MAP = "RdBu_r"  # diverging at 0: red = the two find the same layers fragile


def fragility_score(table: pd.DataFrame) -> pd.Series:
    """Each row's oriented value scaled to [0, 1] across its model's layers, per measure."""
    value = pd.Series(oriented(table["value"], table["fragile"]), index=table.index)
    keys = [table["model"], table["measure"]]
    low, high = value.groupby(keys).transform("min"), value.groupby(keys).transform("max")
    span = (high - low).where(high > low)
    return ((value - low) / span).fillna(0.5)


def heat_map(table: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Layers (forward order, top to bottom) x measures (grouped by study) of one model."""
    part = table[table["model"] == model].assign(score=fragility_score(table[table["model"] == model]))
    layers = part.drop_duplicates("layer").sort_values("depth")
    measures = part.drop_duplicates("measure").sort_values(["study", "measure"])
    grid = part.pivot(index="layer", columns="measure", values="score").reindex(
        index=layers["layer"], columns=measures["measure"])
    values = part.pivot(index="layer", columns="measure", values="value").reindex_like(grid)
    fig, ax = plt.subplots(figsize=(2.5 + 0.42 * grid.shape[1], 2.2 + 0.45 * grid.shape[0]),
                           layout="constrained")
    image = ax.imshow(grid.to_numpy(dtype=float), cmap=FRAGILE_MAP, vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(values.to_numpy(dtype=float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6,
                    color="white" if grid.iloc[i, j] > 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=7)
    labels = [f"{r.layer} ({r.type}, {int(r.parameters):,})" for r in layers.itertuples()]
    ax.set_yticks(range(grid.shape[0]), labels, fontsize=7)
    studies = measures["study"].to_numpy()
    for j in np.flatnonzero(studies[1:] != studies[:-1]):
        ax.axvline(j + 0.5, color="black", lw=1)
    ax.set_title(title(dataset, model, "each measure's verdict per layer\n"
                       "(cell: the value; colour: fragility across layers)"))
    fig.colorbar(image, ax=ax, label="fragility (1: most fragile)", shrink=0.9)
    return fig


def agreement_matrix(agreement: pd.DataFrame, dataset: str) -> plt.Figure:
    """Spearman's rho of every pair of measures, one panel per model and the pooled one."""
    models = list(dict.fromkeys(agreement["model"]))
    names = list(dict.fromkeys([*agreement["measure_a"], *agreement["measure_b"]]))
    side = 1.2 + 0.15 * len(names)  # inches per panel: 30 measures fit in 5.7 in
    cols = min(2, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 1.2, side * rows + 0.3),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models, strict=False):
        part = agreement[agreement["model"] == model]
        matrix = pd.DataFrame(np.nan, index=names, columns=names)
        for row in part.itertuples():
            matrix.loc[row.measure_a, row.measure_b] = matrix.loc[row.measure_b, row.measure_a] = row.rho
        keep = matrix.notna().any(axis=0)
        matrix = matrix.loc[keep, keep]
        values = matrix.to_numpy(dtype=float, copy=True)
        np.fill_diagonal(values, 1.0)
        image = ax.imshow(values, cmap=AGREEMENT_MAP, vmin=-1, vmax=1)
        ax.set_xticks(range(len(matrix)), matrix.columns, rotation=90, fontsize=5)
        ax.set_yticks(range(len(matrix)), matrix.index, fontsize=5)
        heading = "pooled over the models" if model == POOLED else model
        ax.set_title(f"{dataset} / {heading}: agreement of the measures")
    fig.colorbar(image, ax=list(axes.flat), label=r"Spearman's $\rho$ (> 0: same layers fragile)",
                 shrink=0.5)
    return fig


def depth_profile(table: pd.DataFrame, dataset: str) -> plt.Figure:
    """Each study's verdict (its measures' mean fragility score) against relative depth,
    one panel per study, one line per model."""
    table = table.assign(score=fragility_score(table))
    studies = sorted(table["study"].unique())
    colour, mark = colours(table["model"]), markers(table["model"])  # one each per model
    fig, axes = plt.subplots(1, len(studies), figsize=(3.0 * len(studies) + 1.2, 3.2), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, study in zip(axes[0], studies, strict=True):
        part = table[table["study"] == study]
        for model, line in part.groupby("model"):
            mean = line.groupby("depth")["score"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker=mark[model], label=model, color=colour[model])
            ax.scatter(line["depth"], line["score"], s=6, alpha=0.3, color=colour[model])
        ax.set_title(f"{study} ({part['measure'].nunique()} measures)")
        ax.set_xlabel("relative depth (0 = first weight layer)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("fragility (1 = most fragile layer)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, la in zip(*ax.get_legend_handles_labels(), strict=True):
            if la not in labels:
                handles.append(h)
                labels.append(la)
    fig.legend(handles, labels, loc="outside right center", title="model")
    suptitle(fig, title(dataset, ", ".join(colour), "where each study finds the fragile layers"))
    return fig


def write_figures(atlas: str | os.PathLike, agreement: str | os.PathLike,
                  out: str | os.PathLike, *, svg: bool = False) -> list[Path]:
    """Every atlas figure as PNG and PDF (and SVG when `svg`) in directory `out`:
    heat_{model}, agreement, depth."""
    table = files.read_table(atlas, ATLAS).to_pandas()
    agree = files.read_table(agreement, AGREEMENT).to_pandas()
    dataset = str(table["dataset"].iloc[0])
    out = Path(out)
    figures = {f"heat_{m}": heat_map(table, m, dataset) for m in dict.fromkeys(table["model"])}
    figures["agreement"] = agreement_matrix(agree, dataset)
    figures["depth"] = depth_profile(table, dataset)
    written = []
    for name, fig in figures.items():
        save(fig, out / f"{name}.png", out / f"{name}.pdf", svg=svg)
        written.append(out / f"{name}.png")
    return written
