"""Figures of the adversarial study, from its files alone (never imports torch).

`examples`: originals, their L-BFGS adversarial examples and the difference
magnified 10x (Szegedy et al.'s Figure 5 layout). `units`: the test images
that most activate one unit beside those for a random direction (§3).
`transfer`: the error of every model on every model's examples (Table 2),
with the Gaussian-noise and amplified controls.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from lesion import files  # noqa: E402
from lesion.figures import save  # noqa: E402
from lesion.studies.adversarial import kinds  # noqa: E402


def _show(ax, image: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "gray") -> None:
    """One CHW image; grey for one channel, RGB for three."""
    picture = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    ax.imshow(picture if image.shape[0] == 1 else np.clip(picture, vmin, vmax),
              cmap=cmap if image.shape[0] == 1 else None, vmin=vmin, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])


def examples(sets: dict[str, str], test: str, out_dir: str, *, count: int = 8) -> None:
    """One figure per model (`sets`: model -> its L-BFGS set), `out_dir`/{model}.png and .pdf:
    rows original, adversarial, 10x difference (centred at grey) for the first `count`
    images whose attack succeeded. One job draws them all: the test split and matplotlib
    load once."""
    t = load_file(test)
    for model, path in sets.items():
        s = load_file(path)
        chosen = np.flatnonzero(s["success"])[:count]
        if len(chosen) == 0:
            chosen = np.arange(min(count, len(s["labels"])))
        fig, axes = plt.subplots(3, len(chosen), figsize=(1.3 * len(chosen), 4.3),
                                 squeeze=False)
        for col, i in enumerate(chosen):
            clean = t["images"][s["position"][i]]
            adv = s["images"][i]
            _show(axes[0][col], clean)
            _show(axes[1][col], adv)
            _show(axes[2][col], np.clip(0.5 + 10 * (adv - clean), 0, 1))
            target = int(s["targets"][i])
            axes[0][col].set_title(f"label {int(s['labels'][i])}", fontsize=8)
            axes[1][col].set_title(f"target {target}" if target >= 0 else "", fontsize=8)
            axes[2][col].set_title(f"d={float(s['distortion'][i]):.3f}", fontsize=8)
        for row, name in enumerate(("original", "adversarial", "10x difference")):
            axes[row][0].set_ylabel(name, fontsize=8)
        fig.suptitle(f"{model}: adversarial examples (box-constrained L-BFGS)", fontsize=10)
        fig.tight_layout()
        save(fig, os.path.join(out_dir, f"{model}.png"), os.path.join(out_dir, f"{model}.pdf"))


def units(path: str, png: str, pdf: str) -> None:
    """The top images for one unit (left) and for a random direction (right)."""
    found = load_file(path)
    fig, axes = plt.subplots(2, len(found["unit_index"]), figsize=(1.2 * len(found["unit_index"]), 3),
                             squeeze=False)
    for row, key in enumerate(("unit_images", "random_images")):
        for col, image in enumerate(found[key]):
            _show(axes[row][col], image)
    axes[0][0].set_ylabel("unit", fontsize=8)
    axes[1][0].set_ylabel("random\ndirection", fontsize=8)
    fig.suptitle("Test images that maximise one unit (top) and a random direction (bottom)",
                 fontsize=9)
    fig.tight_layout()
    save(fig, png, pdf)


def transfer(table: str, png: str, pdf: str) -> None:
    """Heat map: error (%) of each target model (columns) on each source's examples of
    the study's main attack (L-BFGS when there), as they are and amplified (rows), then
    the Gaussian-noise controls."""
    df = files.read_table(table, kinds.TRANSFER).to_pandas()
    made = [a for a in dict.fromkeys(df["attack"]) if a != "gaussian"]
    attack = "lbfgs" if "lbfgs" in made else made[0]
    ours = df[df["attack"] == attack]
    raw = ours[~ours["amplified"]]
    amplified = ours[ours["amplified"]].assign(
        source=lambda d: d["source"] + " x" + d["sigma"].map("{:g}".format))
    noise = df[df["attack"] == "gaussian"].assign(
        source=lambda d: "gaussian " + d["sigma"].map("{:g}".format))
    rows = pd.concat([raw, amplified, noise])
    order_targets = list(dict.fromkeys(df["target"]))
    grid = rows.pivot_table(index="source", columns="target", values="error", sort=False)
    grid = grid.reindex(columns=order_targets) * 100
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(grid.columns), 1.2 + 0.32 * len(grid)))
    image = ax.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(grid)), grid.index, fontsize=8)
    for (r, c), value in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(value):
            ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 60 else "black")
    ax.set_xlabel("model evaluated")
    ax.set_ylabel(f"{attack} examples made for (x sigma: amplified)")
    ax.set_title(f"Transfer of {attack} examples: error (%)", fontsize=10)
    fig.colorbar(image, ax=ax, label="error (%)")
    fig.tight_layout()
    save(fig, png, pdf)


def csv(table: str, out: str) -> None:
    """A table of the study (any of kinds.KINDS) as CSV for the report, numbers rounded."""
    found = files.read_table(table)
    stamp = (found.schema.metadata or {}).get(files.KIND_KEY, b"").decode()
    kind = next((k for k in kinds.KINDS.values() if k.name == stamp), kinds.DISTORTION)
    df = files.read_table(table, kind).to_pandas().round(4)
    with files.atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
