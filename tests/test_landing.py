"""The report's landing page (workflow/report/workflow.rst) for every shipped config, without a build.

`snakemake --report` renders the page only at the end of a study, so a config the
template mishandles (a section it reads a missing key of, a link to an item the study
does not write) would fail only then. Here the template is rendered the way Snakemake
9 renders it (snakemake.report.auto_report: Jinja2 with trim_blocks and lstrip_blocks,
`snakemake.config` the canonical config, `categories` and `files` the report's, its
link targets appended, then docutils) for each config in config/ and .test/, with the
categories its studies would write and a few items: it must render, resolve every link
it makes, name each study the config runs and no other, and list the operators of
`perturbations` by name and nothing else. tests/test_report.py opens a built one.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lesion.catalog import OPERATORS
from lesion.config import canonical, check, load_schema
from lesion.registry import studies

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "workflow" / "report" / "workflow.rst"
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
SECTIONS = {s.section for s in studies()}


def _is_study(path: Path) -> bool:
    """A config that runs a study (not a profile's or an overlay's fragment without one)."""
    loaded = yaml.safe_load(path.read_text())
    return isinstance(loaded, dict) and bool(SECTIONS & set(loaded))


CONFIGS = sorted(p for folder in ("config", "config/examples", ".test")
                 for p in (REPO / folder).glob("*.yaml") if _is_study(p))
# Snakemake's link targets (auto_report's rst_links): a category's name opens its page, an
# item's file name the item
LINKS = """

{% for cat in categories %}
.. _{{ cat.name }}: javascript:app.showCategory('{{ cat.name|urlencode }}')
{% endfor %}
{% for res in files %}
.. _{{ res.target }}: javascript:app.showResultInfo('{{ res.target|urlencode }}')
{% endfor %}
"""
ITEMS = ["claims.csv", "performances.png", "bounds.png", "distortion.csv", "accuracy.png"]


def landing_page(config: dict, items: list[str]) -> str:
    from docutils.core import publish_parts
    from jinja2 import Environment

    check(config, SCHEMA)
    config = canonical(config, SCHEMA)
    titles = [s.title for s in studies() if s.section in config]
    categories = [SimpleNamespace(name=name) for name in [*titles, "Claims"]]
    files = [SimpleNamespace(target=name) for name in items]
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    rst = env.from_string(TEMPLATE.read_text() + LINKS).render(
        snakemake=SimpleNamespace(config=config), categories=categories, files=files)
    return publish_parts(rst, writer="html")["html_body"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_landing_page_of_each_shipped_config_names_its_studies_and_operators(path):
    config = yaml.safe_load(path.read_text())
    page = landing_page(config, ITEMS)
    assert "system-message" not in page, page  # a link docutils could not resolve, or bad rst
    for study in studies():
        assert (study.title in page) == (study.section in config), study.title
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    operators = [name for name in config.get("perturbations", {}) if name in OPERATORS]
    if operators:
        said = re.search(r"by (\d+) operators?, (.+?), at several levels", text)
        assert said, text
        assert sorted(re.split(r", | and ", said.group(2))) == sorted(operators), said.group(0)
    for word in ("models", "testsets"):
        assert not re.search(rf"\b{word}\b", text), f"{path.name}: the landing page says {word!r}"


def test_a_missing_item_is_named_not_linked():
    """A study whose main figure is not in the report (a config that turns it off, a report
    of part of a study) keeps its sentence, the file named in code rather than a dead link."""
    page = landing_page(yaml.safe_load((REPO / ".test" / "faults.yaml").read_text()), [])
    assert "system-message" not in page, page
    assert "bounds.png" in page and "showResultInfo" not in page


def test_the_fault_regimes_are_named_when_there_are_some_and_the_tolerance_figure_only_then():
    """The default's four regimes by name (one of them, dropout0, is the network itself: the
    page says regimes, not retrainings); a fault study without regimes writes no tolerance
    figure, and its sentence names none."""
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    text = " ".join(re.sub(r"<[^>]+>", "", landing_page(default, ITEMS + ["tolerance.png"])).split())
    regimes = sorted(default["faults"]["regimes"])  # the canonical config sorts keys
    assert f"under {len(regimes)} training regimes ({', '.join(regimes[:-1])} and {regimes[-1]})" in text
    assert "retrained in" not in text
    plain = yaml.safe_load((REPO / ".test" / "faults.yaml").read_text())
    plain["faults"].pop("regimes")
    text = " ".join(re.sub(r"<[^>]+>", "", landing_page(plain, ITEMS)).split())
    assert "regime" not in text and "tolerance" not in text
    assert "error bounds b1-b4 in bounds.png." in text
