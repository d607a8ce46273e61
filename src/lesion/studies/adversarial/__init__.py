"""The adversarial study (Szegedy et al. 2013, "Intriguing properties of neural networks"):
minimum-distortion box-constrained L-BFGS examples, their transfer across models and
training sets, Gaussian-noise controls, adversarial training and unit inspection."""

from lesion.registry import Study

STUDY = Study(
    section="adversarial",
    group="adversarial",
    title="Adversarial (Szegedy et al. 2013)",
    here=__file__,
    rules="workflow/rules/adversarial.smk",
    check="lesion.studies.adversarial.settings:check",
    model_lists=("adversarial.models[]", "adversarial.cross_training.models[]",
                 "adversarial.training.model", "adversarial.units.model"),
    path_names=("adversarial.training.regimes.*",),
    claims="lesion.studies.adversarial.claims:claims",
    atlas="lesion.studies.adversarial.atlas:measures",
    api=("lesion.studies.adversarial.api:attack",),
)
