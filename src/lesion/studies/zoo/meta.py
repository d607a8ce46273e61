"""Meta-classifiers: predict a net's hyper-parameters from its weights, two ways.

`cnn`, as Eilertsen et al.'s meta_classifier.py on a smaller scale: a 1-D CNN
reads `slice_length` consecutive weights of a net's flat vector (space.layout
order) from a snapshot in a window (the paper used the later half); classes
are balanced by subsampling nets, in meta-train and meta-test alike; Adam.
Slices are stratified by tensor: each training slice overlaps one tensor of
its net chosen uniformly (weights and biases alike), its start uniform among
the starts whose slice overlaps that tensor. Uniform starts would hardly
ever see the small tensors: in the default zoo fc1 is 79% of the vector and
the three convolutions 7%. A meta-test net is read at `positions` slices per
tensor, evenly spaced over that tensor's starts.

`statistics`, as Unterthiner et al. (2020, arXiv:2002.11448): per tensor the
mean, std, mean |w| and the quantiles 0, 25, 50, 75, 100 of its weights
(STATISTICS, tensors in layout order, padded with NaN where nets have fewer
tensors), read by a scikit-learn random forest of `trees` trees trained on
the window's snapshots of the same balanced meta-train nets; each tree grows
on a bootstrap of as many (net, snapshot) samples as there are meta-train
nets, so the cost does not grow with the window.

Accuracy is the share of meta-test (net, snapshot, slice) samples classified
right over the window (for statistics a net's snapshot is one sample);
`ci95` is the half-width of a normal 95% interval counting meta-test nets,
not samples (samples of one net are not independent). The accuracy per
snapshot index asks the same classifier about every snapshot, the early ones
included: does the property become readable as training goes on?

The learning rate is regressed (log10, a random forest on the statistics
over all converged meta-train nets): `r2` on meta-test nets (each net's
prediction averaged over the window) against predicting the meta-train mean,
with a 95% bootstrap interval over meta-test nets (`r2_low`, `r2_high`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch
from safetensors import safe_open
from torch import nn

from lesion import files
from lesion.studies.zoo import kinds
from lesion.studies.zoo.space import check_dataset, net_seed, spans

log = logging.getLogger(__name__)

CLASSIFIERS = ("cnn", "statistics")
STATISTICS = ("mean", "std", "mean_abs", "q0", "q25", "q50", "q75", "q100")
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
BOOTSTRAP = 1000  # resamples of meta-test nets for the R² interval
Spans = Sequence[tuple[int, int]]  # (start, stop) of each tensor in a flat vector


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


# --- slices ----------------------------------------------------------------

def start_ranges(tensors: Spans, total: int, slice_length: int) -> torch.Tensor:
    """(T, 2): the first and last start of a slice of `slice_length` weights (within the
    `total` of the vector) that overlaps each tensor [start, stop). Never empty."""
    return torch.tensor([[max(0, a - slice_length + 1), min(b - 1, total - slice_length)]
                         for a, b in tensors], dtype=torch.int64)


def draw_starts(ranges: torch.Tensor, counts: torch.Tensor, nets: torch.Tensor,
                gen: torch.Generator) -> torch.Tensor:
    """A slice start for each entry of `nets` (indices into ranges (N, T, 2) and counts
    (N,), the tensors of each net): a tensor of the net uniformly, then a start
    uniformly among those whose slice overlaps it. Draws from `gen` (CPU)."""
    u = torch.rand(2, len(nets), generator=gen, dtype=torch.float64)
    tensor = (u[0] * counts[nets]).long()
    lo, hi = ranges[nets, tensor, 0], ranges[nets, tensor, 1]
    return lo + (u[1] * (hi - lo + 1)).long()


def spread_starts(ranges: torch.Tensor, positions: int) -> torch.Tensor:
    """(T * positions,): per tensor, `positions` starts evenly spaced over its range, each
    the middle of one of `positions` equal parts (one position: the middle)."""
    steps = (torch.arange(positions, dtype=torch.float64) + 0.5) / positions
    lo, hi = ranges[:, :1].double(), ranges[:, 1:].double()
    return (lo + steps * (hi - lo)).round().long().reshape(-1)


# --- statistics --------------------------------------------------------------

def statistics(flat: torch.Tensor, tensors: Spans) -> torch.Tensor:
    """(..., T * 8): STATISTICS of each tensor [start, stop) of flat (..., P), in order."""
    q = torch.tensor(QUANTILES, dtype=flat.dtype)
    out = []
    for a, b in tensors:
        w = flat[..., a:b]
        out += [w.mean(-1), w.std(-1, correction=0), w.abs().mean(-1),
                *torch.quantile(w, q, dim=-1).unbind(0)]
    return torch.stack(out, dim=-1)


def net_statistics(snapshots: Mapping[int, torch.Tensor],
                   tensors: Mapping[int, Spans]) -> dict[int, np.ndarray]:
    """net -> (S, F) statistics (float64 from the float32 weights), padded with NaN to the
    widest net's F. Nets with the same tensors are stacked, one call per tensor."""
    groups: dict[tuple, list[int]] = {}
    for n in snapshots:
        groups.setdefault(tuple(tensors[n]), []).append(n)
    out = {}
    for spans_, nets_ in groups.items():
        found = statistics(torch.stack([snapshots[n] for n in nets_]), spans_).double().numpy()
        out.update(zip(nets_, found, strict=True))
    width = max(f.shape[1] for f in out.values())
    return {n: np.pad(f, ((0, 0), (0, width - f.shape[1])), constant_values=np.nan)
            for n, f in out.items()}


def _sklearn_seed(seed: int) -> int:
    return seed % 2**32


def _score(hits: np.ndarray, window: tuple[int, int], test_labels: Sequence[int], classes: int) -> dict:
    """hits (nets, S): each meta-test net's share right per snapshot -> the summary."""
    first, last = window
    per_snapshot = hits.mean(0)
    accuracy = float(per_snapshot[first:last + 1].mean())
    counts = np.bincount(np.asarray(test_labels), minlength=classes)
    return {"accuracy": accuracy, "chance": float(counts.max()) / len(test_labels),
            "ci95": 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / len(test_labels)),
            "per_snapshot": [float(a) for a in per_snapshot]}


def forest(features: Mapping[int, np.ndarray], labels: Mapping[int, int], train: Sequence[int],
           test: Sequence[int], classes: int, *, window: tuple[int, int], trees: int,
           seed: int) -> dict:
    """The statistics classifier: a random forest on the window's snapshots of `train`,
    scored on `test` at every snapshot (same returns as classify)."""
    from sklearn.ensemble import RandomForestClassifier

    first, last = window
    x = np.concatenate([features[n][first:last + 1] for n in train])
    y = np.repeat([labels[n] for n in train], last - first + 1)
    model = RandomForestClassifier(n_estimators=trees, max_samples=len(train),
                                   random_state=_sklearn_seed(seed), n_jobs=1)
    model.fit(x, y)
    n_snap = features[test[0]].shape[0]
    pred = model.predict(np.concatenate([features[n] for n in test])).reshape(len(test), n_snap)
    hits = (pred == np.array([labels[n] for n in test])[:, None]).astype(float)
    return _score(hits, window, [labels[n] for n in test], classes)


def regression(features: Mapping[int, np.ndarray], targets: Mapping[int, float], train: Sequence[int],
               test: Sequence[int], *, window: tuple[int, int], trees: int, seed: int) -> dict:
    """A random forest regressing `targets` from the statistics (the window's snapshots of
    `train`); r2 of the test nets' predictions (each averaged over the window) against
    predicting the mean of the train targets, and a 95% bootstrap interval over test nets."""
    from sklearn.ensemble import RandomForestRegressor

    first, last = window
    width = last - first + 1
    x = np.concatenate([features[n][first:last + 1] for n in train])
    y = np.repeat([targets[n] for n in train], width)
    model = RandomForestRegressor(n_estimators=trees, max_samples=len(train), max_features=1 / 3,
                                  random_state=_sklearn_seed(seed), n_jobs=1)
    model.fit(x, y)
    x_test = np.concatenate([features[n][first:last + 1] for n in test])
    pred = model.predict(x_test).reshape(len(test), width).mean(1)
    truth = np.array([targets[n] for n in test])
    baseline = float(np.mean([targets[n] for n in train]))

    def r2(index):
        return 1.0 - np.sum((truth[index] - pred[index]) ** 2) / np.sum((truth[index] - baseline) ** 2)

    rng = np.random.default_rng(_sklearn_seed(net_seed(seed, "bootstrap")))
    draws = np.sort([r2(rng.integers(len(test), size=len(test))) for _ in range(BOOTSTRAP)])
    return {"r2": float(r2(np.arange(len(test)))), "r2_low": float(np.quantile(draws, 0.025)),
            "r2_high": float(np.quantile(draws, 0.975)), "baseline": baseline}


# --- the 1-D CNN -------------------------------------------------------------

def classify(snapshots: Mapping[int, torch.Tensor], labels: Mapping[int, int],
             train: Sequence[int], test: Sequence[int], classes: int, *, slice_length: int,
             window: tuple[int, int], steps: int, batch_size: int, learning_rate: float,
             positions: int, seed: int, tensors: Mapping[int, Spans] | None = None,
             device: torch.device | str = "cpu") -> dict:
    """Train one 1-D CNN meta-classifier on `train` nets, score it on `test` nets.

    snapshots: net -> (S, P) flat weights; labels: net -> class in 0..classes-1;
    tensors: net -> (start, stop) of each of its tensors (default: the whole
    vector is one); window: the snapshot indices (first, last) it trains and is
    scored on. Each training sample draws, from a generator seeded by `seed`,
    a net, a snapshot in the window and a start (draw_starts). Returns
    accuracy, ci95, chance (majority share in test) and per_snapshot
    (accuracy at every snapshot index 0..S-1).
    """
    short = [n for n in (*train, *test) if snapshots[n].shape[1] < slice_length]
    if short:
        raise ValueError(f"slice_length = {slice_length} is longer than net {short[0]} "
                         f"({snapshots[short[0]].shape[1]} weights); expected at most the "
                         "smallest net's")
    if tensors is None:
        tensors = {n: [(0, w.shape[1])] for n, w in snapshots.items()}
    ranges = {n: start_ranges(tensors[n], snapshots[n].shape[1], slice_length) for n in (*train, *test)}
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # nn.Module initialises from the global generator
        torch.manual_seed(seed)
        model = classifier(classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    first, last = window
    # the training nets' window, padded to one tensor, so a batch is one gather
    sizes = [snapshots[n].shape[1] for n in train]
    weights = torch.zeros(len(train), last - first + 1, max(sizes))
    for i, n in enumerate(train):
        weights[i, :, :sizes[i]] = snapshots[n][first:last + 1]
    counts = torch.tensor([len(ranges[n]) for n in train])
    padded = torch.zeros(len(train), int(counts.max()), 2, dtype=torch.int64)
    for i, n in enumerate(train):
        padded[i, :len(ranges[n])] = ranges[n]
    weights = weights.to(device)
    y_all = torch.tensor([labels[n] for n in train], device=device)
    span = torch.arange(slice_length, device=device)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(train), (batch_size,), generator=gen)
        snap = torch.randint(last - first + 1, (batch_size,), generator=gen)
        start = draw_starts(padded, counts, pick, gen)
        pick, snap, start = pick.to(device), snap.to(device), start.to(device)
        x = weights[pick[:, None], snap[:, None], start[:, None] + span]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:, None]), y_all[pick]).backward()
        opt.step()
    del weights
    model.eval()
    n_snap = snapshots[test[0]].shape[0]
    hits = np.zeros((len(test), n_snap))
    with torch.no_grad():
        for i, n in enumerate(test):
            w = snapshots[n].to(device)
            starts = spread_starts(ranges[n], positions).to(device)
            x = w[:, starts[:, None] + span]  # (S, T * positions, L)
            pred = model(x.reshape(-1, 1, slice_length)).argmax(1).view(n_snap, len(starts))
            hits[i] = (pred == labels[n]).double().mean(1).cpu().numpy()
    return _score(hits, window, [labels[n] for n in test], classes)


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


def net_spans(rows: Sequence[Mapping], dataset: str) -> dict[int, list[tuple[int, int]]]:
    """net -> (start, stop) of each of its tensors (space.spans on its architecture)."""
    input_shape, classes = check_dataset(dataset)
    out = {}
    for r in rows:
        found = spans(r, input_shape, classes)
        if found[-1][2] != r["weights"]:
            raise files.InputFileError(f"net {r['net']} has {r['weights']} weights; expected "
                                       f"{found[-1][2]} for its architecture on {dataset}")
        out[int(r["net"])] = [(a, b) for _, a, b in found]
    return out


SUMMARY_SCHEMA = pa.schema([
    ("property", pa.string()), ("classifier", pa.string()), ("task", pa.string()),
    ("n_classes", pa.int64()), ("chance", pa.float64()), ("accuracy", pa.float64()),
    ("ci95", pa.float64()), ("r2", pa.float64()), ("r2_low", pa.float64()), ("r2_high", pa.float64()),
    ("n_train_nets", pa.int64()), ("n_test_nets", pa.int64()), ("snapshots", pa.string()),
    ("slice_length", pa.int64()), ("steps", pa.int64()), ("trees", pa.int64())])
SNAPSHOT_SCHEMA = pa.schema([
    ("property", pa.string()), ("classifier", pa.string()), ("snapshot", pa.int64()),
    ("accuracy", pa.float64()), ("chance", pa.float64()), ("n_test_nets", pa.int64())])


def study(nets_path: str | os.PathLike, *, dataset: str, properties: Sequence[str], slice_length: int,
          window: tuple[int, int], steps: int, batch_size: int, learning_rate: float,
          positions: int, trees: int, study_seed: int, out: str | os.PathLike,
          snapshots_out: str | os.PathLike, device: str = "cpu", precision: str = "ieee") -> None:
    """Both meta-classifiers per property, and the learning rate's regression, over the
    converged nets of nets.parquet."""
    from lesion.evaluate import pick_device

    dev = pick_device(device, precision)
    rows = [r for r in files.read_table(nets_path, kinds.NETS).to_pylist() if r["converged"]]
    weights = load_snapshots(rows)
    tensors = net_spans(rows, dataset)
    features = net_statistics(weights, tensors) if rows else {}
    label = f"{window[0]}-{window[1]}"
    summary, per_snapshot = [], []
    for prop in properties:
        if rows and prop not in rows[0]:
            raise ValueError(f"property {prop!r} is not a column of {nets_path}")
        values = sorted({r[prop] for r in rows}, key=str)
        labels = {int(r["net"]): values.index(r[prop]) for r in rows}
        train = [int(r["net"]) for r in rows if r["split"] == "meta-train"]
        test = [int(r["net"]) for r in rows if r["split"] == "meta-test"]
        present = {labels[n] for n in train} & {labels[n] for n in test}
        base = {"property": prop, "task": "classification", "n_classes": len(present), "snapshots": label}
        cnn = {"slice_length": slice_length, "steps": steps}
        if len(present) < 2:
            log.warning("%s: converged nets cover %d class(es) in both splits; not classified",
                        prop, len(present))
            summary += [{**base, "classifier": name, "n_train_nets": 0, "n_test_nets": 0,
                         **(cnn if name == "cnn" else {"trees": trees})} for name in CLASSIFIERS]
            continue
        remap = {c: i for i, c in enumerate(sorted(present))}
        labels = {n: remap.get(c, -1) for n, c in labels.items()}
        train = balanced(labels, [n for n in train if labels[n] >= 0], f"{prop}/train", study_seed)
        test = balanced(labels, [n for n in test if labels[n] >= 0], f"{prop}/test", study_seed)
        results = {
            "cnn": classify(weights, labels, train, test, len(present), slice_length=slice_length,
                            window=window, steps=steps, batch_size=batch_size,
                            learning_rate=learning_rate, positions=positions, tensors=tensors,
                            seed=net_seed(study_seed, "meta", prop), device=dev),
            "statistics": forest(features, labels, train, test, len(present), window=window,
                                 trees=trees, seed=net_seed(study_seed, "statistics", prop)),
        }
        for name, result in results.items():
            log.info("%s, %s: accuracy %.3f +- %.3f (chance %.3f) on %d meta-test nets", prop, name,
                     result["accuracy"], result["ci95"], result["chance"], len(test))
            summary.append({**base, "classifier": name, "chance": result["chance"],
                            "accuracy": result["accuracy"], "ci95": result["ci95"],
                            "n_train_nets": len(train), "n_test_nets": len(test),
                            **(cnn if name == "cnn" else {"trees": trees})})
            per_snapshot += [{"property": prop, "classifier": name, "snapshot": s, "accuracy": a,
                              "chance": result["chance"], "n_test_nets": len(test)}
                             for s, a in enumerate(result["per_snapshot"])]
    summary += _learning_rate(rows, features, window, trees, study_seed, label)
    files.write_table(pa.Table.from_pylist(summary, schema=SUMMARY_SCHEMA), out, kind=kinds.META)
    files.write_table(pa.Table.from_pylist(per_snapshot, schema=SNAPSHOT_SCHEMA), snapshots_out,
                      kind=kinds.META_SNAPSHOTS)


def _learning_rate(rows, features, window, trees, study_seed, label) -> list[dict]:
    """The regression row of meta.parquet (none when the learning rate is fixed or too few nets)."""
    targets = {int(r["net"]): math.log10(r["learning_rate"]) for r in rows}
    train = [int(r["net"]) for r in rows if r["split"] == "meta-train"]
    test = [int(r["net"]) for r in rows if r["split"] == "meta-test"]
    if len(set(targets.values())) < 2 or len(train) < 2 or len(test) < 2:
        log.warning("learning_rate: fixed, or fewer than 2 converged nets per split; not regressed")
        return []
    result = regression(features, targets, train, test, window=window, trees=trees,
                        seed=net_seed(study_seed, "statistics", "learning_rate"))
    log.info("learning_rate (log10), statistics: R2 %.3f [%.3f, %.3f] against the meta-train mean "
             "on %d meta-test nets", result["r2"], result["r2_low"], result["r2_high"], len(test))
    return [{"property": "learning_rate", "classifier": "statistics", "task": "regression",
             "n_classes": 0, "r2": result["r2"], "r2_low": result["r2_low"], "r2_high": result["r2_high"],
             "n_train_nets": len(train), "n_test_nets": len(test), "snapshots": label, "trees": trees}]
