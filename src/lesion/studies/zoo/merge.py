"""Merge the shards' tables into the zoo's table: converged rule and meta-train/test split.

Torch-free. `nets.parquet` has one row per net: its properties, seed,
final accuracies, `converged` (final test accuracy at least
`min_accuracy` and finite weights; nets that did not learn are excluded from
the meta-classifiers, as the original excluded "poor convergence"), `split`
(meta-train, meta-test, or excluded) and `snapshots` (the shard file that
holds its weights).

Exclusion must not depend on the properties, or the nets left over carry a
property in their accuracy rather than in their weights: `excluded.parquet`
reports the excluded share per value of every property that varies (and
per quartile of the learning rate), and the log says it in one line per
property.

The split is seeded without random draws: converged nets are ordered by a
hash of (study seed, net id), and the first round(test_fraction * n) are
meta-test. It is disjoint by construction, the same for a net whichever
shard trained it, and stable when nets are added to the zoo.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

import pyarrow as pa

from lesion import files
from lesion.studies.zoo import kinds
from lesion.studies.zoo.space import PROPERTIES, net_seed

log = logging.getLogger(__name__)
RATE_BINS = 4  # the learning rate's quartiles in the exclusion table


def merge(tables: Sequence[str | os.PathLike], snapshots: Sequence[str | os.PathLike], *,
          nets: int, min_accuracy: float, test_fraction: float, study_seed: int,
          out: str | os.PathLike, excluded_out: str | os.PathLike | None = None) -> pa.Table:
    """Concatenate shard tables (and their snapshot files, same order); check that every
    net 0..nets-1 is there exactly once; add converged, split and snapshots; write the
    excluded share per property value to `excluded_out` where given."""
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
    converged = [r for r in rows if r["test_accuracy"] >= min_accuracy and r.get("finite", True)]
    converged.sort(key=lambda r: net_seed(study_seed, r["net"], "split"))
    n_test = round(test_fraction * len(converged))
    split = {r["net"]: ("meta-test" if i < n_test else "meta-train") for i, r in enumerate(converged)}
    for r in rows:
        r["converged"] = r["net"] in split
        r["split"] = split.get(r["net"], "excluded")
    table = pa.Table.from_pylist(rows)
    metadata = {"min_accuracy": repr(min_accuracy), "test_fraction": repr(test_fraction),
                "study_seed": str(study_seed)}
    files.write_table(table, out, metadata, kind=kinds.NETS)
    shares = exclusion(rows)
    for line in summary(shares, min_accuracy):
        log.info("%s", line)
    if excluded_out is not None:
        files.write_table(pa.Table.from_pylist(shares, schema=EXCLUDED_SCHEMA), excluded_out, metadata,
                          kind=kinds.EXCLUDED)
    return table


EXCLUDED_SCHEMA = pa.schema([("property", pa.string()), ("value", pa.string()), ("nets", pa.int64()),
                             ("excluded", pa.int64()), ("share", pa.float64()), ("ci95", pa.float64())])


def _share(prop: str, value: str, rows: Sequence[Mapping]) -> dict:
    excluded = sum(not r["converged"] for r in rows)
    share = excluded / len(rows)
    return {"property": prop, "value": value, "nets": len(rows), "excluded": excluded, "share": share,
            "ci95": 1.96 * math.sqrt(share * (1 - share) / len(rows))}


def exclusion(rows: Sequence[Mapping]) -> list[dict]:
    """The excluded share of nets per value of each property that varies.

    rows: the zoo's rows with `converged`. One row per (property, value):
    value as text, nets (with that value), excluded (of them, not converged),
    share = excluded / nets, ci95 (normal half-width over those nets). The
    first row is property and value `all` (the whole zoo); the learning rate's
    rows are its quartiles (nets sorted by rate, cut in four), valued
    "[lowest, highest]".
    """
    if not rows:
        return []
    out = [_share("all", "all", rows)]
    for prop in PROPERTIES:
        values = sorted({r[prop] for r in rows if prop in r})
        if len(values) < 2:
            continue
        out += [_share(prop, str(v), [r for r in rows if r[prop] == v]) for v in values]
    rates = sorted(rows, key=lambda r: r["learning_rate"]) if "learning_rate" in rows[0] else []
    if len({r["learning_rate"] for r in rates}) >= 2 and len(rates) >= RATE_BINS:
        bounds = [round(k * len(rates) / RATE_BINS) for k in range(RATE_BINS + 1)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            part = rates[a:b]
            value = f"[{part[0]['learning_rate']:.3g}, {part[-1]['learning_rate']:.3g}]"
            out.append(_share("learning_rate", value, part))
    return out


def summary(shares: Sequence[Mapping], min_accuracy: float) -> list[str]:
    """Log lines: the excluded share of the zoo, then one line per property."""
    if not shares:
        return []
    whole, lines, by_prop = shares[0], [], {}
    lines.append(f"excluded {whole['excluded']} of {whole['nets']} nets ({100 * whole['share']:.1f}%): "
                 f"final test accuracy below {min_accuracy:g} or weights not finite")
    for s in shares[1:]:
        by_prop.setdefault(s["property"], []).append(f"{s['value']} {100 * s['share']:.1f}%")
    lines += [f"excluded share by {prop}: {', '.join(parts)}" for prop, parts in by_prop.items()]
    return lines
