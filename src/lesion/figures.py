"""Writing figures: one house style, matplotlib without a display, PNG and PDF (and SVG) written atomically.

Shared by every study's plots, which import `plt` from here so that the style
(`lesion.mplstyle`, shipped with the package) is applied before any figure is
made. The helpers below are the style's parts that a style file cannot say:
the palette by name, titles that name dataset, model and what is drawn, one
legend outside the panels, the chance line, colour maps centred on the value
that matters. Torch-free, like all plotting.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from lesion import files  # noqa: E402

STYLE = Path(__file__).with_name("lesion.mplstyle")
plt.style.use(STYLE)
# The steps log at INFO (lesion.cli); at that level fontTools lists every glyph of every font
# it subsets into a PDF (and warns of the fonts' own timestamps) and mathtext every symbol it
# substitutes: 400 lines of a figure job's log, none of them about the study.
logging.getLogger("fontTools").setLevel(logging.ERROR)
logging.getLogger("matplotlib").setLevel(logging.WARNING)

# The style's qualitative palette (Okabe & Ito without their yellow), and markers
# so that lines that coincide, or a reader without colour, still tell apart.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
NEUTRAL = "0.35"  # lines every series shares (chance, the unperturbed network)
# Diverging, colour-blind safe, white at the centre: red below it, blue above.
DIVERGING = "RdBu"
# Sequential maps for values with no meaningful middle.
SEQUENTIAL = "viridis"
# The range of every accuracy axis unless the config asks otherwise (figures.accuracy_axis).
ACCURACY = (0.0, 1.0)


def colours(names: Iterable[str]) -> dict[str, str]:
    """One palette colour per name, in order (the palette repeats past seven)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(names))}


def markers(names: Iterable[str]) -> dict[str, str]:
    """One marker per name, in order: with `colours`, eight or more series stay apart."""
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(dict.fromkeys(names))}


def title(dataset: str, model: str | None, what: str) -> str:
    """A figure's title: dataset, model (None: every model) and what is plotted."""
    return f"{dataset} / {model}: {what}" if model else f"{dataset}: {what}"


def suptitle(fig: plt.Figure, text: str) -> None:
    """The figure's title, wrapped to its width (a narrow figure of one layer or a few
    models would otherwise cut a long title at both edges)."""
    size = matplotlib.font_manager.FontProperties(size=plt.rcParams["figure.titlesize"]).get_size_in_points()
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * size)))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")))


def centred(vmin: float, vmax: float, centre: float) -> TwoSlopeNorm:
    """A colour norm with `centre` at the diverging map's middle (1 for a ratio to the
    unperturbed network, 0 for a score), widened so that both ends exist."""
    return TwoSlopeNorm(centre, min(vmin, centre - 1e-6), max(vmax, centre + 1e-6))


def chance(ax: plt.Axes, y: float, label: str | None = "chance") -> None:
    """Chance (or any reference every series shares) as a neutral dashed line."""
    ax.axhline(y, color=NEUTRAL, ls="--", lw=1, label=label, zorder=1)


def legend(fig: plt.Figure, axes: Sequence[plt.Axes] | None = None, *, where: str = "right",
           order: Sequence[str] = (), **kwargs) -> matplotlib.legend.Legend | None:
    """One legend for the whole figure, outside the panels (constrained layout makes the
    room): every labelled artist of `axes` (all of the figure's) once, in order of first
    appearance, or labels in `order` first in that order."""
    handles, labels = [], []
    for ax in axes if axes is not None else fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    if not handles:
        return None
    rank = {label: i for i, label in enumerate(order)}
    pairs = sorted(zip(handles, labels, strict=True), key=lambda hl: rank.get(hl[1], len(rank)))
    handles, labels = [h for h, _ in pairs], [la for _, la in pairs]
    loc = {"right": "outside right center", "bottom": "outside lower center"}[where]
    if where == "bottom":
        kwargs.setdefault("ncols", min(len(labels), 4))
    return fig.legend(handles, labels, loc=loc, **kwargs)


def save(fig: plt.Figure, png: str | os.PathLike, pdf: str | os.PathLike, *,
         svg: bool = False) -> None:
    """Write a figure as PNG and PDF, and as SVG beside the PNG (same name) when `svg`
    (config figures.svg), each atomically."""
    outputs = [(png, "png"), (pdf, "pdf")] + ([(Path(png).with_suffix(".svg"), "svg")] if svg else [])
    for path, fmt in outputs:
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    plt.close(fig)


def accuracy_axis(ax: plt.Axes, limits: tuple[float, float] = ACCURACY, *, pad: float = 0.02) -> None:
    """The y axis of an accuracy (or another share) over `limits` (config
    figures.accuracy_axis; 0-1 unless asked otherwise, so that one drop looks the same
    size in every figure and study), widened by `pad` of its span at both ends so that a
    line at either end stays visible (bars want pad=0: they start at the axis)."""
    low, high = limits
    margin = pad * (high - low)
    ax.set_ylim(low - margin, high + margin)
