"""Synaptic filtering (Pravin et al. 2024): fragile, robust and antifragile parameters.

Ideal high-pass, low-pass and pulse-wave filters (the engine's operators
`highpass`, `lowpass`, `pulse`) remove a layer's weights by value, over 25
thresholds across the layer's [min, max]; each filtered network is evaluated
on the clean test set and on an FGSM test set, at checkpoints of several
epochs. filters: the sweep of a checkpoint (every layer, and all layers at
once); scores: the filtering scores and classes (no torch); retrain: masks
from the classes and selective retraining; plots: figures (no torch); cli:
its steps.
"""

from lesion.registry import Study

STUDY = Study(
    section="filtering",
    group="filtering",
    title="Synaptic filtering (Pravin et al. 2024)",
    here=__file__,
    rules="workflow/rules/filtering.smk",
    check="lesion.studies.filtering.settings:check",
    model_lists=("filtering.models[]",),
    path_names=("filtering.models[]",),
    claims="lesion.studies.filtering.claims:claims",
    atlas="lesion.studies.filtering.atlas:measures",
    api=("lesion.studies.filtering.api:filter_scores",),
)
