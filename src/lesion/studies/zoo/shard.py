"""One shard of the zoo: sample its nets' rows, train them group by group, save snapshots.

A shard is one job and two files: the snapshots (safetensors, one tensor
`net{id}` of shape (snapshots, weights) per net, float32, each row a flat
vector in `space.layout` order) and a table (one row per net: its sampled
properties, seed, number of weights and optimiser steps, final accuracies,
`finite`: whether every snapshot is finite, false for a net that diverged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import pyarrow as pa
import torch
from tqdm import tqdm

from lesion import data, files, tensorfiles
from lesion.studies.zoo import grouped, kinds, sample, space

log = logging.getLogger(__name__)
ORDER = ("layer by layer in forward order (conv1.., fc1.., out), each layer's weight then its "
         "bias, each tensor row-major in PyTorch's layout (conv: out, in, kh, kw; linear: out, in)")


def load(dataset: str, train: str | os.PathLike, test: str | os.PathLike, study_seed: int,
         names=space.DATASETS) -> grouped.Data:
    """A dataset's tensor caches in the derived versions `names` (default: every one)."""
    return grouped.Data.build(data.load_split(train), data.load_split(test),
                              data.get(dataset, split=test).num_classes, study_seed, names)


def build(zoo: Mapping, *, dataset: str, train: str | os.PathLike, test: str | os.PathLike,
          study_seed: int, shard: int, shards: int, snapshots_out: str | os.PathLike,
          table_out: str | os.PathLike, device: str = "cpu", precision: str = "ieee") -> None:
    """Train shard `shard` of `shards` and write its snapshots and its table."""
    from lesion.evaluate import pick_device

    dev = pick_device(device, precision)
    space.check_nets(zoo)  # the whole section is checked with the config
    ds = load(dataset, train, test, study_seed, zoo["choices"]["dataset"])
    rows = sample.shard_rows(zoo, study_seed, shard, shards)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(space.group_key(r), []).append(r)
    tensors, out_rows = {}, []
    log.info("shard %d of %d: %d nets in %d groups", shard, shards, len(rows), len(groups))
    for members in tqdm(groups.values(), desc=f"zoo shard {shard}", mininterval=1):
        result = grouped.train_group(members, ds, epochs=zoo["epochs"], snapshots=zoo["snapshots"],
                                     device=dev)
        steps = zoo["epochs"] * (len(ds.train_labels) // int(members[0]["batch_size"]))
        for i, r in enumerate(members):
            tensors[f"net{r['net']}"] = result["snapshots"][i]
            out_rows.append({**r, "shard": shard, "weights": int(result["snapshots"].shape[-1]),
                             "steps": steps,
                             "finite": bool(torch.isfinite(result["snapshots"][i]).all()),
                             "train_accuracy": float(result["train_accuracy"][i]),
                             "test_accuracy": float(result["test_accuracy"][i])})
    meta = {"study": "zoo", "dataset": dataset, "shard": shard, "shards": shards,
            "snapshots": zoo["snapshots"], "epochs": zoo["epochs"], "order": ORDER,
            "device": dev.type, "precision": precision}
    tensorfiles.save_tensors(tensors, snapshots_out, meta)
    out_rows.sort(key=lambda r: r["net"])
    files.write_table(pa.Table.from_pylist(out_rows), table_out,
                      {k: str(v) for k, v in meta.items()}, kind=kinds.SHARD)


def snapshots(path: str | os.PathLike, net: int) -> torch.Tensor:
    """The snapshots (S, P) of one net from its shard's file."""
    tensors = tensorfiles.load_tensors(path)
    name = f"net{net}"
    if name not in tensors:
        raise files.InputFileError(f"{path}: no tensor {name!r}; expected the shard that trained "
                                   f"net {net}")
    return tensors[name]
