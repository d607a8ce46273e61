"""Merge the shards' tables into the zoo's table: converged rule and meta-train/test split.

Torch-free. `nets.parquet` has one row per net: its properties, seed,
final accuracies, `converged` (final test accuracy at least
`min_accuracy`; nets that did not learn are excluded from the
meta-classifiers, as the original excluded "poor convergence"), `split`
(meta-train, meta-test, or excluded) and `snapshots` (the shard file that
holds its weights).

The split is seeded without random draws: converged nets are ordered by a
hash of (study seed, net id), and the first round(test_fraction * n) are
meta-test. It is disjoint by construction, the same for a net whichever
shard trained it, and stable when nets are added to the zoo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa

from lesion import files
from lesion.studies.zoo import kinds
from lesion.studies.zoo.space import net_seed


def merge(tables: Sequence[str | os.PathLike], snapshots: Sequence[str | os.PathLike], *,
          nets: int, min_accuracy: float, test_fraction: float, study_seed: int,
          out: str | os.PathLike) -> pa.Table:
    """Concatenate shard tables (and their snapshot files, same order); check that every
    net 0..nets-1 is there exactly once; add converged, split and snapshots."""
    if len(tables) != len(snapshots):
        raise ValueError(f"{len(tables)} shard tables but {len(snapshots)} snapshot files; "
                         "expected one file per table, in the same order")
    rows = []
    for table, weights in zip(tables, snapshots, strict=True):
        rows += [{**r, "snapshots": str(weights)} for r in files.read_table(table, kinds.SHARD).to_pylist()]
    seen = sorted(r["net"] for r in rows)
    if seen != list(range(nets)):
        doubled = sorted({n for n in seen if seen.count(n) > 1})
        missing = sorted(set(range(nets)) - set(seen))
        raise files.InputFileError(f"the shards hold {len(seen)} rows for {nets} nets "
                                   f"(missing {missing[:5]}, doubled {doubled[:5]}); expected "
                                   "each net 0..nets-1 once")
    rows.sort(key=lambda r: r["net"])
    converged = [r for r in rows if r["test_accuracy"] >= min_accuracy]
    converged.sort(key=lambda r: net_seed(study_seed, r["net"], "split"))
    n_test = round(test_fraction * len(converged))
    split = {r["net"]: ("meta-test" if i < n_test else "meta-train") for i, r in enumerate(converged)}
    for r in rows:
        r["converged"] = r["net"] in split
        r["split"] = split.get(r["net"], "excluded")
    table = pa.Table.from_pylist(rows)
    files.write_table(table, out, {"min_accuracy": repr(min_accuracy),
                                   "test_fraction": repr(test_fraction), "study_seed": str(study_seed)},
                      kind=kinds.NETS)
    return table
