"""Figures of a lesion study, from its tables alone (never imports torch).

`performances` is the seed study's main figure: top-1 accuracy against the
perturbation level, one panel per operator, one line per layer with its 95%
confidence band over draws. `weight_diffs` shows how far the variants moved
from the original weights; `num_weights` how many parameters each layer has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lesion import files
from lesion.catalog import ACTIVATION_OPERATORS
from lesion.figures import (
    ACCURACY,
    NEUTRAL,
    accuracy_axis,
    colours,
    legend,
    markers,
    plt,
    save,
    suptitle,
    title,
)
from lesion.kinds import SUMMARY, VARIANTS

FIGURES = ("performances", "weight_diffs", "num_weights")

# What an operator's level is, for its panel's x axis (lesion.operators defines them).
LEVEL_LABELS = {
    "synapse_knockout": "fraction of weights set to 0",
    "node_knockout": "fraction of units knocked out",
    "gaussian": r"noise std, in units of $\mathrm{std}(W)$",
    "redraw": "fraction of weights redrawn",
    "bitflip": "per-bit flip probability",
    "stuck_at_zero": "per-bit stuck-at-0 probability",
    "stuck_at_one": "per-bit stuck-at-1 probability",
    "crash": r"crash probability $p$ per neuron",
    "highpass": r"threshold $\alpha$ (0: the weights' min, 1: max; zeroes $w \leq \alpha$)",
    "lowpass": r"threshold $\alpha$ (0: the weights' min, 1: max; zeroes $w \geq \alpha$)",
    "pulse": r"band centre $\alpha$ (0: the weights' min, 1: max)",
}
# How a metric is named on an axis and in a title.
METRIC_NAMES = {"top1": "top-1 accuracy", "top5": "top-5 accuracy",
                "agreement": "agreement with the unperturbed network",
                "nonfinite": "share of non-finite outputs", "loss": "cross-entropy loss"}
# The values a metric can take (metrics.py): a confidence band is clipped to them, and
# an axis with both ends shows all of it (a one-layer study's 0.90-0.97 would make a
# 3-point drop look dramatic).
METRIC_RANGES = {"top1": (0.0, 1.0), "top5": (0.0, 1.0), "agreement": (0.0, 1.0),
                 "nonfinite": (0.0, 1.0), "loss": (0.0, None)}
ACCURACY_METRICS = ("top1", "top5")  # their axes span config figures.accuracy_axis


def band(mean: pd.Series, ci95: pd.Series, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """mean -/+ ci95, clipped to what `metric` can take (a t interval over a few draws
    near 0 or 1 reaches past it)."""
    low, high = METRIC_RANGES.get(metric, (None, None))
    half = ci95.fillna(0).to_numpy()
    return (np.clip(mean.to_numpy() - half, low, high),
            np.clip(mean.to_numpy() + half, low, high))


def _panels(perturbations: list[str], sharey: bool = True):
    """One panel per operator, at most two per row."""
    cols = min(2, len(perturbations))
    rows = -(-len(perturbations) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1.6, 2.5 * rows + 0.4), sharey=sharey,
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(perturbations):]:
        ax.set_visible(False)
    return fig, dict(zip(perturbations, axes.flat, strict=False))


def performances(summary: pd.DataFrame, metric: str = "top1",
                 accuracy: tuple[float, float] = ACCURACY) -> plt.Figure:
    """Mean `metric` against level per layer, CI band, clean model as a dashed line.

    Every line starts at level 0 with the unperturbed network. Test sets other
    than the clean one (adversarial sets, column `testset`) are drawn dotted. An accuracy
    axis spans `accuracy` (config figures.accuracy_axis), any other fraction 0-1.
    """
    rows = summary[summary["metric"] == metric]
    if "testset" not in rows:
        rows = rows.assign(testset="clean")
    testsets = list(dict.fromkeys(rows["testset"]))
    layers = list(dict.fromkeys(rows.loc[rows["perturbation"] != "none", "layer"]))
    colors, marks = colours(layers), markers(layers)
    fig, panels = _panels(list(dict.fromkeys(rows.loc[rows["perturbation"] != "none",
                                                      "perturbation"])))
    for testset in testsets:
        here = rows[rows["testset"] == testset]
        clean = here[here["perturbation"] == "none"]["mean"]
        sweeps = here[here["perturbation"] != "none"]
        if len(clean):
            start = sweeps.drop_duplicates(["perturbation", "layer"]).assign(
                level=0.0, mean=clean.iloc[0], ci95=0.0)
            sweeps = pd.concat([start, sweeps], ignore_index=True)
        style = "-" if testset == "clean" else ":"
        suffix = "" if testset == "clean" else f" ({testset})"
        for perturbation, ax in panels.items():
            for name in layers:
                line = sweeps[(sweeps["perturbation"] == perturbation) & (sweeps["layer"] == name)]
                line = line.sort_values("level")
                ax.plot(line["level"], line["mean"], marker=marks[name], ms=3, ls=style,
                        label=name + suffix, color=colors[name])
                ax.fill_between(line["level"], *band(line["mean"], line["ci95"], metric),
                                alpha=0.15, color=colors[name], lw=0)
            if len(clean):
                ax.axhline(clean.iloc[0], ls="--" if testset == "clean" else "-.", color=NEUTRAL,
                           lw=1, label="unperturbed" + suffix)
            ax.set(title=perturbation, xlabel=LEVEL_LABELS.get(perturbation, "level"))
            low, high = accuracy if metric in ACCURACY_METRICS else METRIC_RANGES.get(metric, (None, None))
            if low is not None and high is not None:
                accuracy_axis(ax, (low, high))
    for ax in list(panels.values())[::2]:
        ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    legend(fig, list(panels.values()), title="layer")
    suptitle(fig, title(summary["dataset"].iloc[0], summary["model"].iloc[0],
                       f"{METRIC_NAMES.get(metric, metric)} per damaged layer, 95% band over draws"))
    return fig


def weight_diffs(variants: pd.DataFrame) -> plt.Figure:
    """Relative L2 distance of the variants from the original weights (mean over draws).

    Operators on activations (crashes) change no weight: they get no panel.
    """
    heading = title(variants["dataset"].iloc[0], variants["model"].iloc[0],
                    "weight change per damaged layer (mean over draws)")
    variants = variants[~variants["perturbation"].isin(ACTIVATION_OPERATORS)]
    if variants.empty:
        fig, ax = plt.subplots(figsize=(4.5, 2), layout="constrained")
        ax.text(0.5, 0.5, "no operator on weights in this study\n(crashes change no weight)",
                ha="center", va="center")
        ax.set_axis_off()
        suptitle(fig, heading)
        return fig
    mean = variants.groupby(["perturbation", "layer", "level"], sort=False)["rel_l2"].mean()
    mean = mean.reset_index()
    layers = list(dict.fromkeys(mean["layer"]))
    colors, marks = colours(layers), markers(layers)
    # Each operator its own y axis: a bit flip in the exponent moves weights by 1e37,
    # which on a shared axis flattens every other operator's line to 0.
    fig, panels = _panels(list(dict.fromkeys(mean["perturbation"])), sharey=False)
    for perturbation, ax in panels.items():
        for name in layers:
            line = mean[(mean["perturbation"] == perturbation) & (mean["layer"] == name)]
            ax.plot(line["level"], line["rel_l2"], marker=marks[name], ms=3, label=name,
                    color=colors[name])
        ax.set(title=perturbation, xlabel=LEVEL_LABELS.get(perturbation, "level"))
        here = mean.loc[mean["perturbation"] == perturbation, "rel_l2"]
        here = here[np.isfinite(here) & (here > 0)]
        if len(here) and here.max() > 1e3 * max(here.min(), 1e-300):
            ax.set_yscale("log")  # lines, not bars: a log axis reads fine
        else:
            ax.set_ylim(bottom=0)
    for ax in list(panels.values())[::2]:
        ax.set_ylabel(r"$\|W' - W\|_2 \;/\; \|W\|_2$")
    legend(fig, list(panels.values()), title="layer")
    suptitle(fig, heading)
    return fig


def num_weights(variants: pd.DataFrame) -> plt.Figure:
    """Parameters (weights and biases) per layer, in forward order: bars on a linear axis
    (a log axis makes bar lengths meaningless), each labelled with its count."""
    counts = variants.drop_duplicates("layer")[["layer", "weights"]]
    fig, ax = plt.subplots(figsize=(max(3.4, 1.4 + 0.6 * len(counts)), 2.8), layout="constrained")
    bars = ax.bar(counts["layer"], counts["weights"], color=colours(["_"])["_"])
    ax.bar_label(bars, [f"{int(n):,}" for n in counts["weights"]], fontsize=7, padding=2)
    ax.margins(y=0.15)
    ax.set(ylabel="parameters (weights and biases)", xlabel="layer, in forward order")
    suptitle(fig, title(variants["dataset"].iloc[0], variants["model"].iloc[0], "parameters per layer"))
    return fig


def figure(name: str, *, summary: str, variants: list[str], png: str, pdf: str,
           svg: bool = False, accuracy: tuple[float, float] = ACCURACY) -> None:
    """The figure step: draw figure `name` from the study's tables (SVG too when `svg`)."""
    if name not in FIGURES:
        raise ValueError(f"figure {name!r} is unknown; expected one of {list(FIGURES)}")
    if name == "performances":
        fig = performances(files.read_table(summary, SUMMARY).to_pandas(), accuracy=accuracy)
    else:
        if not variants:
            raise ValueError(f"figure {name!r} needs --variants tables; none were given")
        table = pd.concat([files.read_table(p, VARIANTS).to_pandas() for p in variants],
                          ignore_index=True)
        fig = weight_diffs(table) if name == "weight_diffs" else num_weights(table)
    save(fig, png, pdf, svg=svg)
