"""The zoo's tables (lesion.files.TableKind): torch-free, shared by the steps that write
them and the steps and plots that read them."""

from __future__ import annotations

from lesion.files import TableKind

SHARD = TableKind("zoo shard", "zoo shard", ("net",))
NETS = TableKind("zoo nets", "zoo merge", ("net", "converged", "split"))
META = TableKind("meta-classifiers", "zoo meta", ("property", "n_classes", "chance", "accuracy"))
META_SNAPSHOTS = TableKind("meta-classifiers per snapshot", "zoo meta", (
    "property", "snapshot", "accuracy", "chance"))
EXCLUDED = TableKind("zoo exclusions", "zoo merge", ("property", "value", "nets", "excluded", "share"))
