"""The report a person opens: `snakemake --report` of a tiny study, rendered in headless Chromium.

One category per study, every figure and table the config asks for, a
landing page written from the config (workflow/report/workflow.rst: the studies it
runs and no other, its operators by name, the claims table first, links that
resolve), and a page that actually renders (a screenshot that is not blank,
categories and the landing text drawn by the report's JavaScript, the rule
graph left out). Needs Debian's `chromium` (.ci/run installs it); skipped,
saying so, without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_workflow import REPO, snakemake, tiny_config

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
    out = snakemake(built_study("faults"), "--report", str(path))
    # every item's type is known (the claims table is Parquet, not text: common.smk)
    assert "Could not detect mimetype" not in out, out[-3000:]
    return path


def landing_text(report: Path) -> str:
    """The landing page's HTML as the report embeds it (`var workflow_desc = "...";`)."""
    found = re.search(r"^\s*var workflow_desc = (\".*\");$", report.read_text(), re.MULTILINE)
    assert found, "the report embeds no workflow description"
    return json.loads(found.group(1))


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
    # the landing page drawn on the Workflow page the report opens on, without the rule graph
    # (workflow/report/style.css, the default profile's report-stylesheet)
    first = "A lesion study of"
    assert rendered.count(first) > source.count(first) >= 1, "the landing page is not drawn"
    assert re.search(r"#rulegraph\s*\{\s*display:\s*none", source), "the rule graph is still shown"


def test_the_landing_page_names_the_studies_the_config_runs_and_no_other(report):
    from lesion.registry import studies

    config = tiny_config("faults")
    page = landing_text(report)
    ran = [s.title for s in studies() if s.section in config]
    assert len(ran) == 2, ran  # perturbations and faults: the check below needs both kinds
    for study in studies():
        if study.section in config:
            assert study.title in page, f"{study.title} runs but the landing page does not name it"
        else:
            assert study.title not in page, f"{study.title} does not run but the landing page names it"
    # every link resolved: docutils writes an unknown target as a "system-message" block
    assert "system-message" not in page and "Unknown target" not in page, page
    # the claims table first, then the studies, each linked to its page and its main figure
    assert page.index("claims.csv") < min(page.index(title) for title in ran), "the claims table comes later"
    for shown in ("showCategory('Faults", "showResultInfo('results/digits/mlp/faults/figures/bounds.png')",
                  "showResultInfo('results/digits/mlp/figures/performances.png')"):
        assert shown in page, shown


def test_the_landing_page_lists_the_operators_by_name_and_nothing_else(report):
    from lesion.catalog import OPERATORS

    config = tiny_config("faults")
    text = " ".join(re.sub(r"<[^>]+>", "", landing_text(report)).split())
    operators = {name for name in config["perturbations"] if name in OPERATORS}
    assert operators == {"crash", "bitflip"}
    # "... perturbed alone by 2 operators, bitflip and crash, at several levels ..."
    said = re.search(r"by (\d+) operators?, (.+?), at several levels", text)
    assert said, f"the landing page names no operators: {text}"
    named = re.split(r", | and ", said.group(2))
    assert sorted(named) == sorted(operators) and said.group(1) == str(len(operators)), said.group(0)
    for word in ("models", "testsets"):  # perturbations' lists (the canonical config has testsets)
        assert not re.search(rf"\b{word}\b", text), f"the landing page says {word!r}: {text}"


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
