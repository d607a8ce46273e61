"""What a person reads off the figures: bands within what a metric can take, each
operator's level named on its axis, no panel for what cannot change."""

from __future__ import annotations

import pandas as pd
import pytest

from lesion.catalog import ACTIVATION_OPERATORS, OPERATOR_LEVELS
from lesion.studies.perturbation import plots


def test_every_operator_names_what_its_level_is():
    assert set(plots.LEVEL_LABELS) == set(OPERATOR_LEVELS)


def test_a_confidence_band_is_clipped_to_what_the_metric_can_take():
    mean, ci = pd.Series([0.05, 0.5, 0.97]), pd.Series([0.2, 0.1, float("nan")])
    low, high = plots.band(mean, ci, "top1")
    assert low.tolist() == pytest.approx([0.0, 0.4, 0.97])   # not -0.15
    assert high.tolist() == pytest.approx([0.25, 0.6, 0.97])
    low, high = plots.band(pd.Series([0.1]), pd.Series([0.3]), "loss")
    assert (low[0], high[0]) == (0.0, pytest.approx(0.4))  # a loss has no upper end


def summary_rows(perturbation, levels, means, ci):
    return [{"dataset": "digits", "model": "mlp", "perturbation": perturbation, "layer": "fc1",
             "level": lv, "variant": "v", "metric": "top1", "mean": m, "std": 0.1, "ci95": ci,
             "n": 2} for lv, m in zip(levels, means, strict=True)]


def test_the_performances_figure_labels_each_operators_axis_and_keeps_bands_in_range():
    summary = pd.DataFrame(summary_rows("none", [0.0], [0.9], float("nan"))
                           + summary_rows("redraw", [0.5, 0.9], [0.3, 0.02], 0.2)
                           + summary_rows("gaussian", [0.5], [0.5], 0.1))
    fig = plots.performances(summary)
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert axes["redraw"].get_xlabel() == "fraction of weights redrawn"
    assert axes["gaussian"].get_xlabel() == "noise std, in units of std(W)"
    lowest = min(c.get_paths()[0].vertices[:, 1].min() for c in axes["redraw"].collections)
    assert lowest >= 0.0


def variants(perturbations):
    return pd.DataFrame([{"dataset": "digits", "model": "mlp", "perturbation": p, "layer": "fc1",
                          "level": 0.5, "draw": 0, "rel_l2": 0.0 if p in ACTIVATION_OPERATORS
                          else 0.3, "weights": 10} for p in perturbations])


def test_weight_diffs_leaves_out_operators_that_change_no_weight():
    fig = plots.weight_diffs(variants(["gaussian", "crash"]))
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["gaussian"]
    only_crashes = plots.weight_diffs(variants(["crash"]))
    assert "crashes change no weight" in only_crashes.axes[0].texts[0].get_text()
