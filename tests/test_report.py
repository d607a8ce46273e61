"""The report a person opens: `snakemake --report` of a tiny study, rendered in headless Chromium.

One category per study, every figure and table the config asks for, and a
page that actually renders (a screenshot that is not blank, categories drawn
by the report's JavaScript). Needs Debian's `chromium` (.ci/run installs it);
skipped, saying so, without it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from test_workflow import REPO, snakemake

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="Debian's chromium is not installed (.ci/run installs it)"),
]

CATEGORIES = ["Perturbations (Cheney et al. 2017)", "Faults (El-Mhamdi et al. 2019)"]
# what .test/faults.yaml asks for: the perturbation study's figures, summary and
# fragility tables of the model, the fault study's bounds and tolerance figures and its table
EXPECTED = ["performances.png", "weight_diffs.png", "num_weights.png", "metrics_summary.csv",
            "fragility.csv", "bounds.png", "tolerance.png", "bounds.csv"]
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--run-all-compositor-stages-before-draw", "--virtual-time-budget=20000"]


@pytest.fixture(scope="module")
def report(built_study, tmp_path_factory) -> Path:
    """The report of the tiny fault study (.test/faults.yaml, built once for this file and
    tests/test_faults.py), written outside the study it reads."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(built_study("faults"), "--report", str(path))
    return path


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CHROMIUM, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_report_renders_a_page_that_is_not_blank(report, tmp_path):
    import numpy as np
    from PIL import Image

    png = tmp_path / "report.png"
    for _ in range(3):  # a loaded machine may shoot before the scripts drew: wait, as a person would
        proc = chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={png}", report.as_uri())
        assert png.is_file(), proc.stderr[-3000:]
        pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
        # the report's dark side bar alone covers about a sixth of the window
        dark = (pixels.max(axis=1) < 128).mean()
        if dark > 0.08:
            break
    assert dark > 0.08, f"only {dark:.1%} of the page is dark: the side bar did not render"
    assert len(np.unique(pixels, axis=0)) > 50, "almost no colours: nothing rendered"


def test_the_report_has_a_category_per_study_drawn_by_its_script(report, tmp_path):
    source = report.read_text()
    rendered = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    for category in CATEGORIES:
        # the DOM after the script ran holds the category names in the page as
        # well as in the embedded data: more often than the file itself
        assert rendered.count(category) > source.count(category) >= 1, category


def test_the_report_holds_every_figure_and_table_the_config_asks_for(report):
    source = report.read_text()
    missing = [name for name in EXPECTED if f'"{name}"' not in source]
    assert not missing, f"not in the report: {missing}"


def test_make_study_installs_what_the_report_needs():
    """`make study` installs lesion without extras and ends with `snakemake --report`: the
    study's own dependencies must hold Snakemake's "reports" extra (a fresh clone's first
    `make study` failed there once: pygments came only with the tests' extras)."""
    import tomllib
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ours = {Requirement(r).name.lower() for r in project["dependencies"]}
    extra = [Requirement(r) for r in requires("snakemake") or []]
    needed = {r.name.lower() for r in extra if r.marker and r.marker.evaluate({"extra": "reports"})}
    assert needed, "snakemake's metadata names no 'reports' extra any more: check what --report needs"
    assert needed <= ours, f"{sorted(needed - ours)} missing from [project] dependencies"
