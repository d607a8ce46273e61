"""Crash faults of neurons and their error bounds b1-b4 (El-Mhamdi et al. 2019).

bounds: Monte Carlo crash errors against the bounds, and the b3 regulariser;
plots: its figures (no torch); cli: its steps.
"""

from lesion.registry import Study

STUDY = Study(
    section="faults",
    group="faults",
    title="Faults (El-Mhamdi et al. 2019)",
    here=__file__,
    rules="workflow/rules/faults.smk",
    check="lesion.studies.faults.settings:check",
    model_lists=("faults.models[]",),
    path_names=("faults.models[]", "faults.regimes.*"),
    claims="lesion.studies.faults.claims:claims",
    atlas="lesion.studies.faults.atlas:measures",
    api=("lesion.studies.faults.api:crash", "lesion.studies.faults.api:bounds"),
)
