"""Figures of the adversarial study, from its files alone (never imports torch).

`examples`: originals, their L-BFGS adversarial examples and the difference
magnified 10x (Szegedy et al.'s Figure 5 layout). `units`: the test images
that most activate one unit beside those for a random direction (§3).
`transfer`: the error of every model on every model's examples (Table 2),
with the Gaussian-noise and amplified controls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import safe_open
from safetensors.numpy import load_file

from lesion import files
from lesion.figures import SEQUENTIAL, plt, save, suptitle, title
from lesion.studies.adversarial import kinds

ATTACK_NAMES = {"lbfgs": "box-constrained L-BFGS", "fgsm": "FGSM", "pgd": "PGD"}


def _metadata(path: str | os.PathLike) -> dict:
    """A safetensors file's metadata, its JSON values decoded."""
    with safe_open(str(path), "numpy") as f:
        found = f.metadata() or {}
    out = {}
    for key, value in found.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _dataset(path: str | os.PathLike) -> str:
    """The dataset a study file belongs to: its path is results/{dataset}/adversarial/..."""
    parent = Path(path).resolve().parent
    return parent.parent.name if parent.name == "adversarial" else "?"


def _show(ax, image: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "gray") -> None:
    """One CHW image; grey for one channel, RGB for three."""
    picture = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    ax.imshow(picture if image.shape[0] == 1 else np.clip(picture, vmin, vmax),
              cmap=cmap if image.shape[0] == 1 else None, vmin=vmin, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.spines[:].set_visible(False)


def examples_figure(test: dict[str, np.ndarray], found: dict[str, np.ndarray], *, dataset: str,
                    model: str, attack: str = "lbfgs", count: int = 8) -> plt.Figure:
    """Rows original, adversarial, 10x difference (centred at grey) for the first `count`
    images of one model's set (`found`, as its file holds it) whose attack succeeded."""
    chosen = np.flatnonzero(found["success"])[:count]
    if len(chosen) == 0:
        chosen = np.arange(min(count, len(found["labels"])))
    fig, axes = plt.subplots(3, len(chosen), figsize=(max(3.4, 0.85 * len(chosen) + 0.6), 3.4),
                             squeeze=False, layout="constrained")
    for col, i in enumerate(chosen):
        clean = test["images"][found["position"][i]]
        adv = found["images"][i]
        _show(axes[0][col], clean)
        _show(axes[1][col], adv)
        _show(axes[2][col], np.clip(0.5 + 10 * (adv - clean), 0, 1))
        target = int(found["targets"][i])
        axes[0][col].set_title(f"label {int(found['labels'][i])}", fontsize=7)
        axes[1][col].set_title(f"target {target}" if target >= 0 else "", fontsize=7)
        axes[2][col].set_title(f"d={float(found['distortion'][i]):.3f}", fontsize=7)
    for row, name in enumerate(("original", "adversarial", "difference\n(10x)")):
        axes[row][0].set_ylabel(name, fontsize=8)
    suptitle(fig, title(dataset, model, f"adversarial examples ({ATTACK_NAMES.get(attack, attack)})"))
    return fig


def examples(sets: dict[str, str], test: str, out_dir: str, *, count: int = 8,
             svg: bool = False) -> None:
    """One figure per model (`sets`: model -> its L-BFGS set), `out_dir`/{model}.png and .pdf
    (and .svg when `svg`).
    One job draws them all: the test split and matplotlib load once."""
    t = load_file(test)
    dataset = _metadata(test).get("dataset", "?")
    for model, path in sets.items():
        fig = examples_figure(t, load_file(path), dataset=dataset, model=model,
                              attack=_metadata(path).get("attack", "lbfgs"), count=count)
        save(fig, os.path.join(out_dir, f"{model}.png"), os.path.join(out_dir, f"{model}.pdf"),
             svg=svg)


def units_figure(found: dict[str, np.ndarray], about: dict, *, dataset: str) -> plt.Figure:
    """The top images for one unit (top row) and for a random direction (bottom row);
    `about` is the units file's metadata (model, layer, unit)."""
    fig, axes = plt.subplots(2, len(found["unit_index"]),
                             figsize=(max(3.4, 0.85 * len(found["unit_index"]) + 0.8), 2.4),
                             squeeze=False, layout="constrained")
    for row, key in enumerate(("unit_images", "random_images")):
        for col, image in enumerate(found[key]):
            _show(axes[row][col], image)
    unit, layer = about.get("unit", "?"), about.get("layer", "?")
    axes[0][0].set_ylabel(f"unit {unit}", fontsize=8)
    axes[1][0].set_ylabel("random\ndirection", fontsize=8)
    suptitle(fig, title(dataset, about.get("model", "?"),
                       f"test images that most activate layer {layer}'s unit {unit} (top)\n"
                       "and a random direction of the same layer (bottom)"))
    return fig


def units(path: str, png: str, pdf: str, *, svg: bool = False) -> None:
    """The units step's figure, from the units file."""
    save(units_figure(load_file(path), _metadata(path), dataset=_dataset(path)), png, pdf, svg=svg)


def transfer_figure(df: pd.DataFrame, *, dataset: str) -> plt.Figure:
    """Heat map: error (%) of each target model (columns) on each source's examples of
    the study's main attack (L-BFGS when there), as they are and amplified (rows), then
    the Gaussian-noise controls (`df`: the transfer table)."""
    made = [a for a in dict.fromkeys(df["attack"]) if a != "gaussian"]
    attack = "lbfgs" if "lbfgs" in made else made[0]
    ours = df[df["attack"] == attack]
    name = ATTACK_NAMES.get(attack, attack)
    raw = ours[~ours["amplified"]]
    amplified = ours[ours["amplified"]].assign(
        source=lambda d: d["source"] + ", amplified to RMS " + d["sigma"].map("{:g}".format))
    noise = df[df["attack"] == "gaussian"].assign(
        source=lambda d: "Gaussian noise, RMS " + d["sigma"].map("{:g}".format))
    rows = pd.concat([raw, amplified, noise])
    order_targets = list(dict.fromkeys(df["target"]))
    grid = rows.pivot_table(index="source", columns="target", values="error", sort=False)
    grid = grid.reindex(columns=order_targets) * 100
    fig, ax = plt.subplots(figsize=(3.4 + 0.5 * len(grid.columns), 1.6 + 0.2 * len(grid)),
                           layout="constrained")
    image = ax.imshow(grid.to_numpy(), cmap=SEQUENTIAL, vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(grid)), grid.index, fontsize=7)
    for (r, c), value in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(value):
            ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if value < 60 else "black")
    first, second = raw["source"].nunique(), raw["source"].nunique() + amplified["source"].nunique()
    for edge in (first, second):  # white rules between examples, amplified ones, noise
        if 0 < edge < len(grid):
            ax.axhline(edge - 0.5, color="white", lw=2)
    ax.set_xlabel("model evaluated")
    ax.set_ylabel("test images: the examples made for")
    suptitle(fig, title(dataset, None, f"transfer of {name} examples\nacross models, error (%)"))
    fig.colorbar(image, ax=ax, label="error (%)", shrink=0.6)
    return fig


def transfer(table: str, png: str, pdf: str, *, svg: bool = False) -> None:
    """The transfer step's figure, from the transfer table."""
    df = files.read_table(table, kinds.TRANSFER).to_pandas()
    save(transfer_figure(df, dataset=_dataset(table)), png, pdf, svg=svg)


def csv(table: str, out: str) -> None:
    """A table of the study (any of kinds.KINDS) as CSV for the report, numbers rounded."""
    found = files.read_table(table)
    stamp = (found.schema.metadata or {}).get(files.KIND_KEY, b"").decode()
    kind = next((k for k in kinds.KINDS.values() if k.name == stamp), kinds.DISTORTION)
    df = files.read_table(table, kind).to_pandas().round(4)
    with files.atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
