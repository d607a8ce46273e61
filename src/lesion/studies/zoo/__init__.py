"""The weight-space study (Eilertsen et al., ECAI 2020, arXiv:2002.05688).

A zoo of small CNNs, each trained with hyper-parameters sampled from a seeded
table, saved as weight snapshots from initialisation to the end; then two
meta-classifiers per hyper-parameter: a small 1-D CNN that reads a contiguous
slice of a net's flattened weights (the original's), and a random forest on
per-tensor weight statistics (Unterthiner et al. 2020), which also regresses
the learning rate. The zoo is built in shards (one job and one file each);
nets of one shard that share an architecture and a batch size train
together, `torch.func.vmap` over their stacked flat weights (`grouped`),
against a plain loop (`loop`) in the tests and in `python -m lesion bench zoo`.
"""

from lesion.registry import Study

STUDY = Study(
    section="zoo",
    group="zoo",
    title="Weight space (Eilertsen et al. 2020)",
    here=__file__,
    rules="workflow/rules/zoo.smk",
    check="lesion.studies.zoo.settings:check",
    claims="lesion.studies.zoo.claims:claims",
)
