"""Weight perturbations layer by layer (Cheney et al. 2017): the figures of a sweep study.

The sweeps themselves (operators, variants, predictions, metrics) are the
engine's; this study draws what they measured.
"""

from lesion.registry import Study

STUDY = Study(
    section="perturbations",
    group="perturbation",
    title="Perturbations (Cheney et al. 2017)",
    here=__file__,
    rules="workflow/rules/perturbation.smk",
    check="lesion.studies.perturbation.settings:check",
    model_lists=("perturbations.models[]",),
    path_names=("perturbations.*", "perturbations.models[]"),
    claims="lesion.studies.perturbation.claims:claims",
    atlas="lesion.studies.perturbation.atlas:measures",
)
