"""Figures of the fault study, from its tables alone (never imports torch).

`bounds`: for one network, the Monte Carlo error against the crash
probability p with each bound beside it; one column per layer, one row per
statistic (mean and std of the output error, E||Delta||_2 with b1).
`tolerance`: networks trained differently (dropout rates, the b3-variance
regulariser) compared the way El-Mhamdi et al. compare them: the error's std
(Monte Carlo, with b3 dashed) and the top-1 accuracy lost, against p, per layer.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lesion import files  # noqa: E402
from lesion.figures import save  # noqa: E402
from lesion.studies.faults.kinds import BOUNDS, ERRORS  # noqa: E402

FIGURES = ("bounds", "tolerance")
ROWS = {"mean": "RMS of E[Delta]", "std": "RMS of Std[Delta]", "norm_l2": "E ||Delta||_2"}
BOUND_STYLE = {"b1": ("tab:red", ":"), "b1_jensen": ("tab:purple", ":"),
               "b2": ("tab:orange", "-."), "b3": ("tab:blue", "--"), "b4": ("tab:green", "-")}


def _grid(rows: int, layers: list[str]):
    fig, axes = plt.subplots(rows, len(layers), figsize=(3.6 * len(layers), 2.9 * rows),
                             squeeze=False, sharex=True)
    return fig, axes


def _tighten(fig: plt.Figure) -> None:
    """Lay the panels out once (a layout engine would redo it for PNG and PDF)."""
    fig.tight_layout(rect=(0, 0, 1, 0.96))


def bounds_figure(errors: pd.DataFrame, table: pd.DataFrame) -> plt.Figure:
    """Monte Carlo error and bounds b1..b4 against p, per layer and statistic."""
    layers = list(dict.fromkeys(errors["layer"]))
    fig, axes = _grid(len(ROWS), layers)
    for col, layer in enumerate(layers):
        for row, (stat, label) in enumerate(ROWS.items()):
            ax = axes[row][col]
            mc = errors[(errors["layer"] == layer) & (errors["statistic"] == stat)].sort_values("p")
            ax.plot(mc["p"], mc["value"], "ko-", ms=3, lw=1.5, label="Monte Carlo")
            here = table[(table["layer"] == layer) & (table["statistic"] == stat)]
            for bound, line in here.groupby("bound", sort=True):
                color, style = BOUND_STYLE.get(bound, ("gray", "-"))
                line = line.sort_values("p")
                ax.plot(line["p"], line["value"], ls=style, color=color, lw=1.4, label=bound,
                        zorder=3 if bound == "b3" else 2)  # b3 dashed over b4 where they meet
            ax.set(xscale="log", yscale="log")
            if row == 0:
                ax.set_title(layer)
            if row == len(ROWS) - 1:
                ax.set_xlabel("crash probability p")
            if col == 0:
                ax.set_ylabel(label)
            ax.legend(fontsize="x-small")
    fig.suptitle(f"{errors['dataset'].iloc[0]} / {errors['model'].iloc[0]}: crash error and "
                 "its bounds")
    _tighten(fig)
    return fig


def tolerance_figure(tables: list[tuple[str, pd.DataFrame, pd.DataFrame]]) -> plt.Figure:
    """Per layer: Std[Delta] (Monte Carlo solid, b3 dashed) and top-1 drop against p.

    `tables` holds (label, errors, bounds) per network; the legend gives each
    network's clean top-1 accuracy.
    """
    layers = list(dict.fromkeys(tables[0][1]["layer"]))
    fig, axes = _grid(2, layers)
    cmap = plt.get_cmap("viridis")
    for i, (label, errors, table) in enumerate(tables):
        color = cmap(i / max(1, len(tables) - 1))
        for col, layer in enumerate(layers):
            mine = errors[errors["layer"] == layer]
            std = mine[mine["statistic"] == "std"].sort_values("p")
            top1 = mine[mine["statistic"] == "top1"].sort_values("p")
            drop = mine[mine["statistic"] == "top1_drop"].sort_values("p")
            clean = float((top1["value"].to_numpy() + drop["value"].to_numpy())[0])
            b3 = table[(table["layer"] == layer) & (table["bound"] == "b3")
                       & (table["statistic"] == "std")].sort_values("p")
            axes[0][col].plot(std["p"], std["value"], "o-", ms=3, color=color,
                              label=f"{label} (top1 {clean:.3f})")
            axes[0][col].plot(b3["p"], b3["value"], "--", color=color, lw=1)
            axes[1][col].plot(drop["p"], drop["value"], "o-", ms=3, color=color, label=label)
    for col, layer in enumerate(layers):
        axes[0][col].set(title=layer, xscale="log", yscale="log")
        axes[1][col].set(xscale="log", xlabel="crash probability p")
    axes[0][0].set_ylabel("RMS Std[Delta] (b3 dashed)")
    axes[1][0].set_ylabel("top-1 accuracy lost")
    axes[0][0].legend(fontsize="x-small")
    first = tables[0][1]
    fig.suptitle(f"{first['dataset'].iloc[0]} / {first['model'].iloc[0]}: fault tolerance by "
                 "training")
    _tighten(fig)
    return fig


def figure(name: str, *, errors: list[str], bounds: list[str], labels: list[str] | None,
           png: str, pdf: str, csv: str | None = None) -> None:
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
    save(fig, png, pdf)
    if csv is not None:
        with files.atomic_path(csv) as tmp:
            data.to_csv(tmp, index=False)
