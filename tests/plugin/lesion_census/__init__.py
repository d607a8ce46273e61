"""A sixth study in its own package, for tests/test_plugin.py and docs/adding-a-study.md.

The census counts each trained network's parameters per tensor and the share of
them near zero: one rule, one table. It lives outside lesion and reaches it
only through the entry point `lesion.studies` (../lesion_census-0.1.dist-info,
what `pip install` of a package with `[project.entry-points."lesion.studies"]`
writes).
"""

from pathlib import Path

from lesion.registry import Study

STUDY = Study(
    section="census",
    group="census",
    title="Census (a plugin study)",
    here=__file__,
    rules=str(Path(__file__).with_name("rules.smk")),
    check="lesion_census.settings:check",
    model_lists=("census.models[]",),
    path_names=("census.models[]",),
)
