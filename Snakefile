# lesion: lesion studies for neural networks as one Snakemake DAG.
# Run `snakemake` (the default profile is picked up from profiles/default);
# `snakemake --configfile config/other.yaml` runs another study instead.
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the default study rather than
# being merged into it (a merge would mix two studies' models and operators).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/perturb.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/faults.smk"


rule all:
    input:
        all_targets(),
    default_target: True
