"""Figures of the fault study, from its tables alone (never imports torch).

`bounds`: for one network, the Monte Carlo error against the crash
probability p with each bound beside it; one column per layer, one row per
statistic (mean and std of the output error, E||Delta||_2 with b1). Bounds are
solid lines, estimates broken lines with hollow markers (b2's Std[Delta] is an
estimate, drawn and labelled as one), Monte Carlo a wide grey line under them.
`tolerance`: networks trained differently (dropout rates, the b3-variance
regulariser) compared the way El-Mhamdi et al. compare them: the error's std
(Monte Carlo, with b3 dashed) and the top-1 accuracy lost, against p, per layer.
"""

from __future__ import annotations

import pandas as pd

from lesion import files
from lesion.figures import NEUTRAL, PALETTE, colours, legend, markers, plt, save, suptitle, title
from lesion.studies.faults.kinds import BOUNDS, ERRORS

FIGURES = ("bounds", "tolerance")
ROWS = {"mean": r"RMS of $\mathbb{E}[\Delta]$", "std": r"RMS of $\mathrm{Std}[\Delta]$",
        "norm_l2": r"$\mathbb{E}\,\|\Delta\|_2$"}
# Monte Carlo: a wide grey line with black dots, under everything. Bounds: solid lines.
# Estimates: broken lines with hollow markers of their own shape, so that where b3, b4
# and Monte Carlo coincide (most layers) each stays visible around the others.
MONTE_CARLO = {"color": "0.7", "lw": 4, "marker": "o", "ms": 4, "mfc": "black", "mec": "black",
               "zorder": 2, "label": "Monte Carlo"}
BOUND_STYLE = {
    "b1": {"color": PALETTE[1], "ls": "-", "label": "$b_1$ bound"},
    "b1_jensen": {"color": PALETTE[3], "ls": "-", "label": "$b_1$ Jensen bound"},
    "b2": {"color": PALETTE[4], "ls": "-", "label": "$b_2$ bound"},
    "b2_estimate": {"color": PALETTE[4], "ls": "-.", "marker": "D", "mfc": "none", "ms": 5,
                    "label": "$b_2$ estimate (not a bound)"},
    "b3": {"color": PALETTE[0], "ls": "--", "marker": "s", "mfc": "none", "ms": 6,
           "label": "$b_3$ estimate (first-order Taylor)"},
    "b4": {"color": PALETTE[2], "ls": ":", "marker": "^", "mfc": "none", "ms": 7,
           "label": "$b_4$ estimate (each neuron crashed alone)"},
}


def _style(bound: str, statistic: str) -> dict:
    """b2 bounds the magnitude of the mean; its Std[Delta] is the paper's estimate."""
    if bound == "b2" and statistic == "std":
        bound = "b2_estimate"
    return {"lw": 1.3, "zorder": 3, **BOUND_STYLE.get(bound, {"color": NEUTRAL, "label": bound})}


def _grid(rows: int, layers: list[str]):
    return plt.subplots(rows, len(layers), figsize=(2.3 * len(layers) + 2.6, 2.0 * rows + 0.5),
                        squeeze=False, sharex=True, layout="constrained")


def bounds_figure(errors: pd.DataFrame, table: pd.DataFrame) -> plt.Figure:
    """Monte Carlo error and bounds b1..b4 against p, per layer and statistic."""
    layers = list(dict.fromkeys(errors["layer"]))
    fig, axes = _grid(len(ROWS), layers)
    for col, layer in enumerate(layers):
        for row, (stat, label) in enumerate(ROWS.items()):
            ax = axes[row][col]
            mc = errors[(errors["layer"] == layer) & (errors["statistic"] == stat)].sort_values("p")
            ax.plot(mc["p"], mc["value"], **MONTE_CARLO)
            here = table[(table["layer"] == layer) & (table["statistic"] == stat)]
            for bound in sorted(set(here["bound"]), key=lambda b: list(BOUND_STYLE).index(b)
                                if b in BOUND_STYLE else len(BOUND_STYLE)):
                line = here[here["bound"] == bound].sort_values("p")
                ax.plot(line["p"], line["value"], **_style(bound, stat))
            ax.set(xscale="log", yscale="log")
            if row == 0:
                ax.set_title(f"layer {layer}")
            if row == len(ROWS) - 1:
                ax.set_xlabel("crash probability $p$")
            if col == 0:
                ax.set_ylabel(label)
    legend(fig, list(axes.flat), order=[MONTE_CARLO["label"]] + [s["label"] for s in BOUND_STYLE.values()])
    suptitle(fig, title(errors["dataset"].iloc[0], errors["model"].iloc[0],
                       r"error of the logits $\Delta$ under crashes per layer, and its bounds"))
    return fig


def tolerance_figure(tables: list[tuple[str, pd.DataFrame, pd.DataFrame]]) -> plt.Figure:
    """Per layer: Std[Delta] (Monte Carlo solid, b3 dashed) and top-1 drop against p.

    `tables` holds (label, errors, bounds) per network; the legend gives each
    network's clean top-1 accuracy.
    """
    layers = list(dict.fromkeys(tables[0][1]["layer"]))
    fig, axes = _grid(2, layers)
    colour, mark = colours(t[0] for t in tables), markers(t[0] for t in tables)
    for label, errors, table in tables:
        for col, layer in enumerate(layers):
            mine = errors[errors["layer"] == layer]
            std = mine[mine["statistic"] == "std"].sort_values("p")
            top1 = mine[mine["statistic"] == "top1"].sort_values("p")
            drop = mine[mine["statistic"] == "top1_drop"].sort_values("p")
            clean = float((top1["value"].to_numpy() + drop["value"].to_numpy())[0])
            b3 = table[(table["layer"] == layer) & (table["bound"] == "b3")
                       & (table["statistic"] == "std")].sort_values("p")
            axes[0][col].plot(std["p"], std["value"], marker=mark[label], ms=3, color=colour[label],
                              label=f"{label} (top-1 {clean:.3f})")
            axes[0][col].plot(b3["p"], b3["value"], "--", color=colour[label], lw=1)
            axes[1][col].plot(drop["p"], drop["value"], marker=mark[label], ms=3, color=colour[label])
    for col, layer in enumerate(layers):
        axes[0][col].set(title=f"layer {layer}", xscale="log", yscale="log")
        axes[1][col].set(xscale="log", xlabel="crash probability $p$")
    axes[0][0].set_ylabel(r"RMS of $\mathrm{Std}[\Delta]$")
    axes[1][0].set_ylabel("top-1 accuracy lost")
    axes[0][0].plot([], [], color=NEUTRAL, label="solid: Monte Carlo")
    axes[0][0].plot([], [], color=NEUTRAL, ls="--", label="dashed: $b_3$ estimate")
    legend(fig, [axes[0][0]], title="training (clean top-1)")
    first = tables[0][1]
    suptitle(fig, title(first["dataset"].iloc[0], first["model"].iloc[0],
                       "crash tolerance by way of training, per crashed layer"))
    return fig


def figure(name: str, *, errors: list[str], bounds: list[str], labels: list[str] | None,
           png: str, pdf: str, csv: str | None = None, svg: bool = False) -> None:
    """The fault-figure step: `bounds` of one network or `tolerance` across networks.

    `csv`, when given, gets the numbers the figure draws, for the report: the
    bounds table (bound, statistic, value, Monte Carlo value) or, for
    tolerance, every network's errors with its label in column `network`.
    """
    if name not in FIGURES:
        raise ValueError(f"fault figure {name!r} is unknown; expected one of {list(FIGURES)}")
    if len(errors) != len(bounds):
        raise ValueError(f"got {len(errors)} errors tables but {len(bounds)} bounds tables; "
                         "expected one of each per network, in the same order")
    labels = labels or [str(i) for i in range(len(errors))]
    if len(labels) != len(errors):
        raise ValueError(f"got {len(labels)} labels for {len(errors)} networks; expected one each")
    read = [(label, files.read_table(e, ERRORS).to_pandas(),
             files.read_table(b, BOUNDS).to_pandas())
            for label, e, b in zip(labels, errors, bounds, strict=True)]
    if name == "bounds":
        if len(read) != 1:
            raise ValueError(f"figure 'bounds' draws one network; got {len(read)} table pairs")
        fig = bounds_figure(read[0][1], read[0][2])
        data = read[0][2]
    else:
        fig = tolerance_figure(read)
        data = pd.concat([e.assign(network=label) for label, e, _ in read], ignore_index=True)
    save(fig, png, pdf, svg=svg)
    if csv is not None:
        with files.atomic_path(csv) as tmp:
            data.to_csv(tmp, index=False)
