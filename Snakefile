# lesion: lesion studies for neural networks as one Snakemake DAG.
# Run `snakemake` (the default profile is picked up from profiles/default).
# `snakemake --configfile config/other.yaml` runs another study instead;
# `snakemake --configfile config/config.yaml my-changes.yaml` layers a small
# overlay onto the default (docs/configuration.md).
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the default study rather than
# being merged into it (a merge would mix two studies' models and operators);
# several are merged in order, so an overlay names the default first.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# The engine: data, networks, sweeps (common.smk first: config and paths).
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/sweeps.smk"
# The studies (lesion.registry: lesion's own and installed plugins): each adds its
# rules and, when its config section is there, its targets.
for _study in STUDIES:

    include: _study.rules_file(workflow.basedir)


# The claims table, from the tables the studies above name.
include: "workflow/rules/claims.smk"
# The layer atlas, from the tables the studies above name.
include: "workflow/rules/atlas.smk"


rule all:
    input:
        all_targets(),
    default_target: True
