"""Figures as SVG and accuracy axes over a range the config chooses (config `figures`,
issue 28): the SVG a figure step writes is the figure, with its text kept as text; every
figure rule writes one beside each PNG when asked, and only then; the accuracy axes of
every study span `figures.accuracy_axis` (0-1 by default) and no other axis does; changing
the section reruns the figures and nothing else."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesion.figures import plt, save
from lesion.studies.filtering import plots as filtering
from lesion.studies.perturbation import plots as perturbation
from lesion.studies.zoo import plots as zoo
from lesion.tools.verify import check_figure
from test_bad_inputs import copy_workflow
from test_gallery import filtering_tables
from test_workflow import planned_jobs, snakemake

SVG = "{http://www.w3.org/2000/svg}"
NARROW = (0.5, 1.0)


def svg_texts(path: Path) -> list[str]:
    """The text of every <text> element of an SVG file, read as XML (not by matplotlib).
    Matplotlib writes a text with mathtext one <tspan> per glyph, indented, spaces as
    no-break spaces: the glyphs are joined without the indentation."""
    root = ElementTree.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return ["".join(piece.strip(" \n\t") for piece in t.itertext()).replace("\xa0", " ")
            for t in root.iter(f"{SVG}text")]


def test_an_svg_is_written_beside_the_png_only_when_asked_and_keeps_its_text(tmp_path):
    for name, svg in (("plain", False), ("asked", True)):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0.2, 0.9])
        ax.set_ylabel("top-1 accuracy")
        fig.suptitle("digits / mlp: a figure")
        save(fig, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf", svg=svg)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "asked.pdf", "asked.png", "asked.svg", "plain.pdf", "plain.png"]
    texts = svg_texts(tmp_path / "asked.svg")
    # editable text (svg.fonttype: none), not glyph outlines
    assert "digits / mlp: a figure" in texts and "top-1 accuracy" in texts
    assert check_figure(str(tmp_path / "asked.svg")) == []


def test_verify_names_an_svg_that_is_cut_short_or_not_an_svg(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save(fig, tmp_path / "f.png", tmp_path / "f.pdf", svg=True)
    text = (tmp_path / "f.svg").read_text()
    (tmp_path / "cut.svg").write_text(text[: len(text) // 2])
    (tmp_path / "html.svg").write_text("<html><body>no figure</body></html>")
    [cut] = check_figure(str(tmp_path / "cut.svg"))
    assert "not whole XML" in cut.what and "SVG" in cut.expected
    [html] = check_figure(str(tmp_path / "html.svg"))
    assert "<html>" in html.what and "<svg>" in html.expected


def summary(metric: str) -> pd.DataFrame:
    """A metrics summary of one layer and operator, top-1 between 0.90 and 0.97: the case
    where an axis fitted to the data would make a 3-point drop look dramatic."""
    rows = [{"dataset": "digits", "model": "mlp", "testset": "clean", "perturbation": "none",
             "layer": "", "level": 0.0, "variant": "", "metric": metric, "mean": 0.97, "std": 0.0,
             "ci95": 0.0, "n": 1}]
    rows += [{"dataset": "digits", "model": "mlp", "testset": "clean", "perturbation": "gaussian",
              "layer": "fc1", "level": level, "variant": "", "metric": metric, "mean": value,
              "std": 0.01, "ci95": 0.01, "n": 3} for level, value in ((0.5, 0.95), (1.0, 0.90))]
    return pd.DataFrame(rows)


def padded(low: float, high: float, pad: float) -> tuple[float, float]:
    return (low - pad * (high - low), high + pad * (high - low))


def accuracy_axes(accuracy) -> dict[str, list[tuple[float, float]]]:
    """Every figure with accuracy axes, drawn with `accuracy` (None: the default): the
    y range of each of its axes labelled with an accuracy."""
    kwargs = {} if accuracy is None else {"accuracy": accuracy}
    _, _, retraining = filtering_tables()
    figures = {
        "performances top-1": perturbation.performances(summary("top1"), **kwargs),
        "performances top-5": perturbation.performances(summary("top5"), metric="top5", **kwargs),
        "retraining": filtering.retraining_figure(retraining, **kwargs),
    }
    meta, snapshots = zoo_tables()
    figures["zoo accuracy"] = zoo.accuracy_figure(meta, "digits", **kwargs)
    figures["zoo snapshots"] = zoo.snapshots_figure(snapshots, "digits", **kwargs)
    ranges = {}
    for name, fig in figures.items():
        labelled = [ax for ax in fig.axes if "accuracy" in ax.get_ylabel()]
        ranges[name] = [ax.get_ylim() for ax in fig.axes if ax.get_visible() and any(
            ax is other or ax.get_shared_y_axes().joined(ax, other) for other in labelled)]
        plt.close(fig)
    return ranges


def zoo_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    meta = pd.DataFrame([{"property": p, "classifier": "cnn", "task": "classification", "chance": 0.5,
                          "accuracy": 0.8, "ci95": 0.05, "r2": np.nan, "r2_low": np.nan,
                          "r2_high": np.nan} for p in ("optimizer", "activation")]
                        + [{"property": "learning_rate", "classifier": "statistics",
                            "task": "regression", "chance": np.nan, "accuracy": np.nan, "ci95": np.nan,
                            "r2": 0.6, "r2_low": 0.5, "r2_high": 0.7}])
    snapshots = pd.DataFrame([{"property": p, "classifier": "cnn", "snapshot": s, "chance": 0.5,
                               "accuracy": 0.6 + 0.05 * s} for p in ("optimizer", "activation")
                              for s in range(5)])
    return meta, snapshots


# lines get 2% of the range beyond each end (a line at 0 or 1 stays visible), bars none
PAD = {"performances top-1": 0.02, "performances top-5": 0.02, "retraining": 0.0,
       "zoo accuracy": 0.0, "zoo snapshots": 0.0}


@pytest.mark.parametrize("accuracy", [None, NARROW], ids=["default", "narrowed"])
def test_every_accuracy_axis_spans_the_configured_range(accuracy):
    low, high = accuracy or (0.0, 1.0)
    found = accuracy_axes(accuracy)
    assert set(found) == set(PAD)
    for name, ranges in found.items():
        assert ranges, f"{name}: no accuracy axis found"
        for ylim in ranges:
            assert ylim == pytest.approx(padded(low, high, PAD[name])), name


def test_axes_that_show_no_accuracy_keep_their_own_range():
    fig = perturbation.performances(summary("agreement"), metric="agreement", accuracy=NARROW)
    assert fig.axes[0].get_ylim() == pytest.approx(padded(0.0, 1.0, 0.02))  # a share, 0-1
    meta, _ = zoo_tables()
    fig = zoo.accuracy_figure(meta, "digits", accuracy=NARROW)
    r2 = next(ax for ax in fig.axes if "R^2" in ax.get_ylabel())
    assert r2.get_ylim() == pytest.approx((-0.2, 1.0))  # R^2 from below 0


# ---- the workflow: every figure rule ------------------------------------------------

def dry_run_jobs(root: Path, *config: str) -> list[tuple[str, list[str], str]]:
    """(rule, outputs, shell command) of every job of the default study, planned from scratch."""
    out = snakemake(root, "--dry-run", "--forceall", "--printshellcmds", *config)
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", out):
        if not (rule := re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)):
            continue
        outputs = re.search(r"\n\s+output: (.*)", block)
        command = re.search(r"\nShell command: (.*)", block)
        jobs.append((rule[1], outputs[1].split(", ") if outputs else [],
                     command[1] if command else ""))
    return jobs


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("figure-options"))


def test_every_figure_rule_writes_an_svg_beside_each_png_only_when_the_config_asks(workflow):
    asked = dry_run_jobs(workflow, "--config", "figures={svg: true, accuracy_axis: [0.5, 1]}")
    figure_jobs = [(rule, outputs, command) for rule, outputs, command in asked
                   if any(o.endswith(".png") for o in outputs)]
    # every study's figure rules, and the atlas's, are in the default study
    assert {rule for rule, _, _ in figure_jobs} >= {
        "perturbation_figures", "fault_figure", "adversarial_examples_figure",
        "adversarial_transfer_figure", "adversarial_units_figure", "filtering_figures",
        "filtering_invariance", "zoo_figures", "atlas_figures"}
    for rule, outputs, command in figure_jobs:
        pngs = [o for o in outputs if o.endswith(".png")]
        assert sorted(o for o in outputs if o.endswith(".svg")) == sorted(p[:-4] + ".svg" for p in pngs), rule
        assert " --svg" in command, rule
        has_accuracy = rule in ("perturbation_figures", "filtering_figures", "zoo_figures")
        assert ("--accuracy-axis 0.5,1 " in command) == has_accuracy, (rule, command)
    plain = dry_run_jobs(workflow)
    assert not [o for _, outputs, _ in plain for o in outputs if o.endswith(".svg")]
    assert not [rule for rule, _, command in plain if "--svg" in command]
    assert all("--accuracy-axis 0,1 " in command for rule, _, command in plain
               if rule in ("perturbation_figures", "filtering_figures", "zoo_figures"))


def test_asking_for_svg_reruns_the_figures_alone_and_each_svg_is_its_figure(built_study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(built_study("faults"), root, symlinks=True)
    config = ("--config", "figures={svg: true, accuracy_axis: [0.5, 1]}")
    planned = {rule for rule, _ in planned_jobs(root, *config)}
    assert planned == {"perturbation_figures", "fault_figure", "all"}, planned
    snakemake(root, *config)
    pngs = sorted((root / "results").rglob("*.png"))
    assert pngs
    for png in pngs:
        texts = svg_texts(png.with_suffix(".svg"))
        assert any(t.startswith("digits / mlp") for t in texts), (png, texts)
