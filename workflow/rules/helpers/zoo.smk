# Helpers of zoo.smk: its config section, where its files live, params, targets.
import json

from lesion.studies.zoo.space import NET_KEYS, classified

ZOO = config.get("zoo") or {}
ZOO_DIR = f"{RESULTS}/{{dataset}}/zoo"
ZOO_SHARD = f"{RESULTS}/{{dataset}}/zoo/shards/{{shard}}"
ZOO_FIGURES = ["accuracy", "snapshots"]

def zoo_settings():
    """What makes the zoo's nets (space.NET_KEYS) as one JSON argument (sorted keys, stable
    text): a shard reruns when these change, not when the meta-classifiers do."""
    nets = {k: ZOO[k] for k in NET_KEYS} if ZOO else {}  # no zoo section: no shard job
    return json.dumps(nets, sort_keys=True, separators=(",", ":"))


def zoo_shards(pattern):
    """Input function: every shard's file of one kind (`pattern` ends in .parquet or .safetensors)."""

    def paths(wildcards):
        return [
            (ZOO_SHARD + pattern).format(dataset=wildcards.dataset, shard=i)
            for i in range(ZOO["shards"])
        ]

    return paths


def zoo_properties():
    return ",".join(classified(ZOO["choices"], ZOO["meta"]["properties"]))


def zoo_targets():
    return [
        f"{RESULTS}/{DATASET}/zoo/figures/{name}.{ext}"
        for name in ZOO_FIGURES
        for ext in FIGURE_EXTS
    ]


def zoo_claim_tables(dataset):
    """The tables the zoo's claims read (lesion.studies.zoo.claims)."""
    return {"meta": f"{RESULTS}/{dataset}/zoo/meta.parquet"}


if ZOO:
    STUDY_TARGETS.append(zoo_targets)
    CLAIM_TABLES["zoo"] = zoo_claim_tables
