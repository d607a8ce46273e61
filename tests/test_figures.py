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
    assert axes["gaussian"].get_xlabel() == r"noise std, in units of $\mathrm{std}(W)$"
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


def test_the_fragility_table_ranks_layers_by_the_area_under_their_top1_curve():
    from lesion.studies.perturbation.fragility import fragility

    summary = pd.DataFrame(summary_rows("none", [0.0], [0.8], float("nan"))
                           + [{**r, "layer": "fc1"} for r in
                              summary_rows("gaussian", [0.5, 1.0], [0.6, 0.2], 0.1)]
                           + [{**r, "layer": "fc2"} for r in
                              summary_rows("gaussian", [1.0, 0.5], [0.7, 0.8], 0.1)])
    table = fragility(summary).set_index("layer")
    # by hand, trapezoids from (0, 0.8): fc1 (0.8+0.6)/2*0.5 + (0.6+0.2)/2*0.5 = 0.55;
    # fc2 (0.8+0.8)/2*0.5 + (0.8+0.7)/2*0.5 = 0.775, over a range of 1.0
    assert table.loc["fc1", "auc"] == pytest.approx(0.55)
    assert table.loc["fc2", "auc"] == pytest.approx(0.775)
    # fc1 crosses 0.4 between (0.5, 0.6) and (1.0, 0.2): 0.5 + 0.2 / 0.4 * 0.5
    assert table.loc["fc1", "half_level"] == pytest.approx(0.75)
    assert pd.isna(table.loc["fc2", "half_level"])
    assert table["rank"].to_dict() == {"fc1": 1, "fc2": 2}
    assert set(table["clean_top1"]) == {0.8}


def test_fragility_is_ranked_per_test_set_each_from_its_own_unperturbed_network():
    from lesion.studies.perturbation.fragility import fragility

    clean = (summary_rows("none", [0.0], [0.8], float("nan"))
             + [{**r, "layer": "fc1"} for r in summary_rows("gaussian", [1.0], [0.4], 0.1)]
             + [{**r, "layer": "fc2"} for r in summary_rows("gaussian", [1.0], [0.6], 0.1)])
    fgsm = (summary_rows("none", [0.0], [0.2], float("nan"))
            + [{**r, "layer": "fc1"} for r in summary_rows("gaussian", [1.0], [0.4], 0.1)]
            + [{**r, "layer": "fc2"} for r in summary_rows("gaussian", [1.0], [0.2], 0.1)])
    summary = pd.DataFrame([{**r, "testset": "clean"} for r in clean]
                           + [{**r, "testset": "fgsm"} for r in fgsm])
    table = fragility(summary).set_index(["testset", "layer"])
    # one trapezoid each: clean fc1 (0.8+0.4)/2 = 0.6, fc2 0.7; fgsm fc1 0.3, fc2 0.2
    assert table["auc"].to_dict() == pytest.approx(
        {("clean", "fc1"): 0.6, ("clean", "fc2"): 0.7, ("fgsm", "fc1"): 0.3, ("fgsm", "fc2"): 0.2})
    assert table["rank"].to_dict() == {("clean", "fc1"): 1, ("clean", "fc2"): 2,
                                       ("fgsm", "fc1"): 2, ("fgsm", "fc2"): 1}
    assert table.loc[("fgsm", "fc1"), "clean_top1"] == 0.2
