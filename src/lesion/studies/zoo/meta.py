"""Meta-classifiers: predict a net's hyper-parameter from a slice of its weights.

As Eilertsen et al.'s meta_classifier.py, on a smaller scale: a 1-D CNN reads
`slice_length` consecutive weights of a net's flat vector (space.layout
order), from a snapshot in a range (the paper used the later half), the
slice's position drawn anew for every sample; classes are balanced by
subsampling nets, in meta-train and meta-test alike; Adam.

Accuracy is per slice: the share of (meta-test net, snapshot, position)
samples classified right, positions evenly spaced over the net's vector.
`ci95` is the half-width of a normal 95% interval counting meta-test nets,
not slices (slices of one net are not independent). The accuracy per
snapshot index asks the same classifier about every snapshot, the early
ones included: does the property become readable as training goes on?
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

import pyarrow as pa
import torch
from safetensors import safe_open
from torch import nn

from lesion import files
from lesion.studies.zoo import kinds
from lesion.studies.zoo.space import net_seed

log = logging.getLogger(__name__)


def classifier(classes: int) -> nn.Sequential:
    """The small 1-D CNN: three conv blocks (5-tap convs of 4, 8, 16 channels, ReLU,
    batch norm as the original's, max-pooling by 4 after the first two), a global
    average and a linear layer to the classes."""
    def block(c_in, c_out, pool):
        return [nn.Conv1d(c_in, c_out, 5, padding=2), nn.ReLU(), nn.BatchNorm1d(c_out),
                *([nn.MaxPool1d(pool)] if pool else [])]
    return nn.Sequential(*block(1, 4, 4), *block(4, 8, 4), *block(8, 16, 0),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, classes))


def balanced(labels: Mapping[int, int], nets: Sequence[int], key: str, study_seed: int) -> list[int]:
    """`nets` subsampled to the same count per class (the rarest class's), chosen in a
    seeded hash order."""
    by_class: dict[int, list[int]] = {}
    for n in sorted(nets, key=lambda n: net_seed(study_seed, n, "balance", key)):
        by_class.setdefault(labels[n], []).append(n)
    least = min(len(v) for v in by_class.values())
    return sorted(n for v in by_class.values() for n in v[:least])


def classify(snapshots: Mapping[int, torch.Tensor], labels: Mapping[int, int],
             train: Sequence[int], test: Sequence[int], classes: int, *, slice_length: int,
             window: tuple[int, int], steps: int, batch_size: int, learning_rate: float,
             positions: int, seed: int, device: torch.device | str = "cpu") -> dict:
    """Train one meta-classifier on `train` nets, score it on `test` nets.

    snapshots: net -> (S, P) flat weights; labels: net -> class in 0..classes-1;
    window: the snapshot indices (first, last) it trains and is scored on.
    Each training sample draws, from a generator seeded by `seed`, a net, a
    snapshot in the window and a slice start in 0..P - slice_length.
    Returns accuracy, ci95, chance (majority share in test) and per_snapshot
    (accuracy at every snapshot index 0..S-1).
    """
    short = [n for n in (*train, *test) if snapshots[n].shape[1] < slice_length]
    if short:
        raise ValueError(f"slice_length = {slice_length} is longer than net {short[0]} "
                         f"({snapshots[short[0]].shape[1]} weights); expected at most the "
                         "smallest net's")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # nn.Module initialises from the global generator
        torch.manual_seed(seed)
        model = classifier(classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    first, last = window
    # the training nets' weights padded to one tensor, so a batch is one gather
    sizes = torch.tensor([snapshots[n].shape[1] for n in train])
    weights = torch.zeros(len(train), snapshots[train[0]].shape[0], int(sizes.max()))
    for i, n in enumerate(train):
        weights[i, :, :sizes[i]] = snapshots[n]
    weights, sizes = weights.to(device), sizes.to(device)
    y_all = torch.tensor([labels[n] for n in train], device=device)
    span = torch.arange(slice_length, device=device)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(train), (batch_size,), generator=gen)
        snap = torch.randint(first, last + 1, (batch_size,), generator=gen)
        u = torch.rand(batch_size, generator=gen, dtype=torch.float64)
        pick, snap, u = pick.to(device), snap.to(device), u.to(device)
        start = (u * (sizes[pick] - slice_length + 1)).long()
        x = weights[pick[:, None], snap[:, None], start[:, None] + span]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:, None]), y_all[pick]).backward()
        opt.step()
    model.eval()
    n_snap = snapshots[test[0]].shape[0]
    hits = torch.zeros(n_snap, device=device)
    with torch.no_grad():
        for n in test:
            w = snapshots[n].to(device)
            starts = torch.linspace(0, w.shape[1] - slice_length, positions).round().long().to(device)
            x = w[:, starts[:, None] + span]  # (S, positions, L)
            pred = model(x.reshape(-1, 1, slice_length)).argmax(1).view(n_snap, positions)
            hits += (pred == labels[n]).float().mean(1)
    per_snapshot = (hits / len(test)).cpu().tolist()
    accuracy = sum(per_snapshot[first:last + 1]) / (last - first + 1)
    counts = torch.bincount(torch.tensor([labels[n] for n in test]), minlength=classes)
    return {"accuracy": accuracy, "chance": float(counts.max()) / len(test),
            "ci95": 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / len(test)),
            "per_snapshot": per_snapshot}


def load_snapshots(rows: Sequence[Mapping]) -> dict[int, torch.Tensor]:
    """Every listed net's snapshots, each shard file opened once."""
    by_file: dict[str, list[int]] = {}
    for r in rows:
        by_file.setdefault(r["snapshots"], []).append(int(r["net"]))
    out = {}
    for path, nets in by_file.items():
        if not os.path.isfile(path):
            raise files.InputFileError(f"{path}: file not found; expected the shard snapshots "
                                       "that nets.parquet names")
        with safe_open(path, framework="pt") as f:
            for n in nets:
                out[n] = f.get_tensor(f"net{n}")
    return out


def study(nets_path: str | os.PathLike, *, properties: Sequence[str], slice_length: int,
          window: tuple[int, int], steps: int, batch_size: int, learning_rate: float,
          positions: int, study_seed: int, out: str | os.PathLike,
          snapshots_out: str | os.PathLike, device: str = "cpu", precision: str = "ieee") -> None:
    """One meta-classifier per property over the converged nets of nets.parquet."""
    from lesion.evaluate import pick_device

    dev = pick_device(device, precision)
    rows = [r for r in files.read_table(nets_path, kinds.NETS).to_pylist() if r["converged"]]
    weights = load_snapshots(rows)
    summary, per_snapshot = [], []
    for prop in properties:
        if rows and prop not in rows[0]:
            raise ValueError(f"property {prop!r} is not a column of {nets_path}")
        values = sorted({r[prop] for r in rows}, key=str)
        labels = {int(r["net"]): values.index(r[prop]) for r in rows}
        train = [int(r["net"]) for r in rows if r["split"] == "meta-train"]
        test = [int(r["net"]) for r in rows if r["split"] == "meta-test"]
        present = {labels[n] for n in train} & {labels[n] for n in test}
        row = {"property": prop, "n_classes": len(present), "slice_length": slice_length,
               "snapshots": f"{window[0]}-{window[1]}", "steps": steps}
        if len(present) < 2:
            log.warning("%s: converged nets cover %d class(es) in both splits; not classified",
                        prop, len(present))
            summary.append({**row, "chance": math.nan, "accuracy": math.nan, "ci95": math.nan,
                            "n_train_nets": 0, "n_test_nets": 0})
            continue
        remap = {c: i for i, c in enumerate(sorted(present))}
        labels = {n: remap.get(c, -1) for n, c in labels.items()}
        train = balanced(labels, [n for n in train if labels[n] >= 0], f"{prop}/train", study_seed)
        test = balanced(labels, [n for n in test if labels[n] >= 0], f"{prop}/test", study_seed)
        result = classify(weights, labels, train, test, len(present), slice_length=slice_length,
                          window=window, steps=steps, batch_size=batch_size,
                          learning_rate=learning_rate, positions=positions,
                          seed=net_seed(study_seed, "meta", prop), device=dev)
        log.info("%s: accuracy %.3f (chance %.3f) on %d meta-test nets", prop, result["accuracy"],
                 result["chance"], len(test))
        summary.append({**row, "chance": result["chance"], "accuracy": result["accuracy"],
                        "ci95": result["ci95"], "n_train_nets": len(train), "n_test_nets": len(test)})
        per_snapshot += [{"property": prop, "snapshot": s, "accuracy": a, "chance": result["chance"],
                          "n_test_nets": len(test)} for s, a in enumerate(result["per_snapshot"])]
    files.write_table(pa.Table.from_pylist(summary), out, kind=kinds.META)
    schema = pa.schema([("property", pa.string()), ("snapshot", pa.int64()), ("accuracy", pa.float64()),
                        ("chance", pa.float64()), ("n_test_nets", pa.int64())])
    files.write_table(pa.Table.from_pylist(per_snapshot, schema=schema), snapshots_out,
                      kind=kinds.META_SNAPSHOTS)
