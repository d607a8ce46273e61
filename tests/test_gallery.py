"""The figure gallery: every figure a study writes, drawn and checked by code for what a
reader would otherwise find by eye (issue 28): no text off the canvas, no legend over
plotted data or over another text, a title that names the dataset and the model.

The perturbation and fault figures are drawn from the tables of the shared tiny study
`built_study("faults")` (built once for the suite); the other studies' figures from
small tables made here, shaped as their steps write them (building those studies again
would cost minutes, drawing from tables costs seconds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from lesion import atlas_plots, files
from lesion.figures import plt
from lesion.kinds import SUMMARY, VARIANTS
from lesion.studies.adversarial import plots as adversarial
from lesion.studies.faults import plots as faults
from lesion.studies.faults.kinds import BOUNDS, ERRORS
from lesion.studies.filtering import plots as filtering
from lesion.studies.filtering.scores import CLASSES, SCORES
from lesion.studies.perturbation import plots as perturbation
from lesion.studies.zoo import plots as zoo

SLACK = 1.0  # pixels: rounding in the renderer's extents


def _texts(fig: plt.Figure) -> list[Text]:
    """Every drawn, non-empty text outside the legends: figure texts, titles, axis labels,
    the tick labels the axis draws (those in its view), annotations."""
    found = [t for t in fig.texts]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    found += [tick.label1, tick.label2]
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def _legends(fig: plt.Figure):
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() and ax.get_visible())]


def _inside(box: Bbox, points: np.ndarray) -> np.ndarray:
    return ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
            & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))


def _line_points(line, ax) -> np.ndarray:
    """A line's vertices and 20 points along each segment, in pixels, kept to its axes."""
    xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) > 1:
        steps = np.linspace(0, 1, 20)[:, None, None]
        xy = (xy[:-1] + steps * (xy[1:] - xy[:-1])).reshape(-1, 2)
    return xy[_inside(ax.bbox.expanded(1.001, 1.001), xy)] if len(xy) else xy


def problems(fig: plt.Figure, *, names: list[str]) -> list[str]:
    """What is wrong with `fig`, in words; `names`: what its title must name."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox.padded(SLACK)
    found = []
    texts = _texts(fig)
    for text in texts:
        box = text.get_window_extent(renderer)
        if not (canvas.containsx(box.x0) and canvas.containsx(box.x1)
                and canvas.containsy(box.y0) and canvas.containsy(box.y1)):
            found.append(f"text {text.get_text()!r} runs off the canvas ({box.bounds})")
    for legend in _legends(fig):
        if not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer).padded(-SLACK)
        if not canvas.contains(box.x0, box.y0) or not canvas.contains(box.x1, box.y1):
            found.append(f"a legend runs off the canvas ({box.bounds})")
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            for line in ax.lines:
                if line.get_visible() and _inside(box, _line_points(line, ax)).any():
                    found.append(f"a legend covers line {line.get_label()!r}")
            for patch in ax.patches:
                if (isinstance(patch, Rectangle) and patch.get_visible() and patch.get_height()
                        and Bbox.intersection(box, patch.get_window_extent(renderer)) is not None):
                    found.append(f"a legend covers a bar ({patch.get_label()!r})")
            for image in ax.images:
                if isinstance(image, AxesImage) and Bbox.intersection(
                        box, image.get_window_extent(renderer)) is not None:
                    found.append("a legend covers an image")
            for band in ax.collections:
                if isinstance(band, PolyCollection) and any(
                        _inside(box, band.get_transform().transform(path.vertices)).any()
                        for path in band.get_paths()):
                    found.append("a legend covers a confidence band")
        for text in texts:
            if Bbox.intersection(box, text.get_window_extent(renderer)) is not None:
                found.append(f"a legend covers text {text.get_text()!r}")
    heading = fig._suptitle.get_text() if fig._suptitle is not None else ""
    heading = heading or " ".join(ax.get_title() for ax in fig.axes if ax.get_visible())
    if not heading.strip():
        found.append("no title")
    found += [f"the title {heading!r} does not name {name!r}" for name in names if name not in heading]
    plt.close(fig)
    return found


# ---- the studies' figures, each with what its title must name --------------------------

def _faults_study(built_study):
    return built_study("faults") / "results" / "digits" / "mlp"


def perturbation_figures(root) -> dict:
    summary = files.read_table(root / "metrics_summary.parquet", SUMMARY).to_pandas()
    variants = pd.concat([files.read_table(p, VARIANTS).to_pandas()
                          for p in sorted((root / "variants").glob("*.parquet"))], ignore_index=True)
    return {"performances": perturbation.performances(summary),
            "weight_diffs": perturbation.weight_diffs(variants),
            "num_weights": perturbation.num_weights(variants)}


def fault_figures(root) -> dict:
    read = [(label, files.read_table(d / "errors.parquet", ERRORS).to_pandas(),
             files.read_table(d / "bounds.parquet", BOUNDS).to_pandas())
            for label, d in [("base", root / "faults"),
                             *((p.name, p) for p in sorted((root / "faults" / "regimes").iterdir()))]]
    return {"bounds": faults.bounds_figure(read[0][1], read[0][2]),
            "tolerance": faults.tolerance_figure(read)}


LAYERS = ["conv1", "conv2", "fc1", "fc2", "all"]
EPOCHS = [5, 10, 40]


def filtering_tables():
    rng = np.random.default_rng(0)
    curves = pd.DataFrame([{"dataset": "digits", "model": "cnn", "filter": f, "epoch": e, "testset": t,
                            "layer": layer, "level": lv, "normalised": float(rng.uniform(0, 1.2))}
                           for f in ("highpass", "pulse") for e in EPOCHS for t in ("clean", "fgsm")
                           for layer in LAYERS for lv in np.linspace(0, 1, 25)])
    scores = pd.DataFrame([{"dataset": "digits", "model": "cnn", "filter": f, "epoch": e, "layer": layer,
                            **{f"class_{s}": CLASSES[int(rng.integers(3))] for s in SCORES}}
                           for f in ("highpass", "lowpass", "pulse") for e in EPOCHS for layer in LAYERS])
    retraining = pd.DataFrame([{"dataset": "digits", "model": "cnn", "epoch": e, "retrained": way,
                                "replicate": r, "top1_clean": 0.96 + 0.01 * r, "top1_adversarial": 0.55,
                                "top1_original_adversarial": 0.58, "warning": ""}
                               for e in (10, 40) for way in ("none", "all", "selected", "fragile")
                               for r in range(3)])
    return curves, scores, retraining


def filtering_figures() -> dict:
    curves, scores, retraining = filtering_tables()
    both = pd.concat([scores, scores.assign(model="mlp")], ignore_index=True)
    return {"heat_highpass": filtering.heat_map(curves, "highpass", clean="clean", adversarial="fgsm"),
            "class_map": filtering.class_map(scores),
            "retraining": filtering.retraining_figure(retraining),
            "invariance": filtering.invariance_figure(filtering.invariance(both))}


MODELS = ["FC10-1e-4", "FC100-100-10", "AE400-10", "cnn"]


def adversarial_figures() -> dict:
    rng = np.random.default_rng(0)
    test = {"images": rng.uniform(0, 1, (20, 1, 8, 8)).astype(np.float32)}
    found = {"images": rng.uniform(0, 1, (10, 1, 8, 8)).astype(np.float32), "position": np.arange(10),
             "success": np.ones(10, bool), "labels": np.arange(10) % 10, "targets": (np.arange(10) + 3) % 10,
             "distortion": np.full(10, 0.1)}
    units = {"unit_index": np.arange(8), "unit_images": test["images"][:8],
             "random_images": test["images"][8:16]}
    rows = [{"source": s, "target": t, "attack": "lbfgs", "amplified": amp, "sigma": sigma,
             "error": float(rng.uniform())} for s in MODELS for t in MODELS
            for amp, sigma in ((False, np.nan), (True, 0.1), (True, 0.3))]
    rows += [{"source": "gaussian", "target": t, "attack": "gaussian", "amplified": False, "sigma": sigma,
              "error": 0.1} for t in MODELS for sigma in (0.1, 0.3)]
    return {"examples": (adversarial.examples_figure(test, found, dataset="digits", model="AE400-10"),
                         ["digits", "AE400-10"]),
            "units": (adversarial.units_figure(units, {"model": "FC100-100-10", "layer": "fc1", "unit": 3},
                                               dataset="digits"), ["digits", "FC100-100-10", "fc1", "3"]),
            "transfer": (adversarial.transfer_figure(pd.DataFrame(rows), dataset="digits"), ["digits"])}


PROPERTIES = {"dataset": 0.25, "batch_size": 0.5, "augmentation": 0.5, "optimizer": 1 / 3,
              "activation": 1 / 3, "initialization": 0.5}


def zoo_figures() -> dict:
    meta = pd.DataFrame([{"property": p, "classifier": c, "task": "classification", "chance": chance,
                          "accuracy": min(0.97, chance + 0.1 + 0.2 * k), "ci95": 0.07, "r2": np.nan,
                          "r2_low": np.nan, "r2_high": np.nan}
                         for p, chance in PROPERTIES.items() for k, c in enumerate(("cnn", "statistics"))]
                        + [{"property": "learning_rate", "classifier": "statistics", "task": "regression",
                            "chance": np.nan, "accuracy": np.nan, "ci95": np.nan, "r2": 0.66,
                            "r2_low": 0.58, "r2_high": 0.73}])
    snapshots = pd.DataFrame([{"property": p, "classifier": c, "snapshot": s, "chance": chance,
                               "accuracy": min(1.0, chance + 0.02 * s)}
                              for p, chance in PROPERTIES.items() for c in ("cnn", "statistics")
                              for s in range(20)])
    return {"accuracy": zoo.accuracy_figure(meta, "digits"),
            "snapshots": zoo.snapshots_figure(snapshots, "digits")}


def atlas_figures() -> dict:
    rng = np.random.default_rng(0)
    measures = {"perturbation": ["crash.area", "gaussian.area"], "faults": ["crash.b3"],
                "filtering": ["highpass.clean"]}
    table = pd.DataFrame([{"dataset": "digits", "model": m, "layer": layer, "depth": d / 2,
                           "parameters": 1000, "type": "Linear", "measure": measure, "study": study,
                           "value": float(rng.normal()), "fragile": "high"}
                          for m in ("mlp", "cnn") for d, layer in enumerate(["fc1", "fc2", "fc3"])
                          for study, names in measures.items() for measure in names])
    names = [n for ns in measures.values() for n in ns]
    agreement = pd.DataFrame([{"dataset": "digits", "model": m, "measure_a": a, "measure_b": b,
                               "rho": float(rng.uniform(-1, 1))}
                              for m in ("mlp", "cnn", "pooled") for i, a in enumerate(names)
                              for b in names[i + 1:]])
    return {"heat_mlp": (atlas_plots.heat_map(table, "mlp", "digits"), ["digits", "mlp"]),
            "agreement": (atlas_plots.agreement_matrix(agreement, "digits"), ["digits", "mlp", "cnn"]),
            "depth": (atlas_plots.depth_profile(table, "digits"), ["digits", "mlp", "cnn"])}


def test_the_perturbation_and_fault_figures_of_the_tiny_study_pass_the_gallery(built_study):
    root = _faults_study(built_study)
    drawn = {**perturbation_figures(root), **fault_figures(root)}
    assert {name: found for name, fig in drawn.items()
            if (found := problems(fig, names=["digits", "mlp"]))} == {}


@pytest.mark.parametrize("study", ["filtering", "adversarial", "zoo", "atlas"])
def test_every_other_studys_figures_pass_the_gallery(study):
    drawn = {"filtering": lambda: {k: (f, ["digits", "cnn"]) for k, f in filtering_figures().items()},
             "adversarial": adversarial_figures,
             "zoo": lambda: {k: (f, ["digits", "zoo"]) for k, f in zoo_figures().items()},
             "atlas": atlas_figures}[study]()
    assert {name: found for name, (fig, names) in drawn.items()
            if (found := problems(fig, names=names))} == {}


def test_the_gallery_finds_a_legend_put_over_the_data_and_a_title_off_the_canvas():
    curves, _, retraining = filtering_tables()
    fig = filtering.retraining_figure(retraining)
    fig.legends[0].remove()
    fig.axes[0].legend(loc="lower left")  # over the bars, as retraining.png had it
    assert any("covers a bar" in p for p in problems(fig, names=["cnn"]))
    fig = filtering.heat_map(curves, "highpass", clean="clean", adversarial="fgsm")
    fig.suptitle("digits / cnn: " + "a title far too long for its figure " * 4)
    assert any("runs off the canvas" in p for p in problems(fig, names=["cnn"]))
    fig = zoo.snapshots_figure(pd.DataFrame({"property": ["p"], "snapshot": [0], "accuracy": [0.5],
                                             "chance": [0.5]}), "digits")
    assert any("does not name 'mlp'" in p for p in problems(fig, names=["mlp"]))
