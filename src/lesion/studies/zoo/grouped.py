"""Train a group of zoo nets that share an architecture and a batch size, all at once.

The group's weights are one (G, P) tensor, a row per net in `space.layout`
order. One step is one forward pass of all of them (`nets.forward`: each
layer `torch.func.vmap`-ed over the rows, each net its own images, labels
and activation), one backward pass, then each net's own optimiser,
written out on the stacked rows: Adam, RMSprop and SGD with momentum as
torch.optim defines them (the constants of the original:
RMSprop's decay 0.9, momentum 0.95), each net's learning rate decayed by
0.96 per epoch like the original's staircase decay. `loop.train_net` trains
the same nets one by one with nn.Module and torch.optim: the tests check
that both give the same weights, and `bench zoo` times them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lesion.studies.zoo import nets
from lesion.studies.zoo.space import ACTIVATIONS, DATASETS, OPTIMIZERS, group_key

BETAS = (0.9, 0.999)  # Adam, torch's defaults
EPS = 1e-8
RMS_ALPHA = 0.9  # the original's RMSProp decay (TensorFlow's default)
MOMENTUM = 0.95  # the original's MomentumOptimizer
DECAY = 0.96  # learning rate per epoch, the original's exponential_decay (staircase)


@dataclass(frozen=True)
class Data:
    """A dataset's splits in the derived versions `names` (DATASETS order), and its shape."""

    train: torch.Tensor  # (len(names), n, C, H, W)
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    classes: int
    names: tuple[str, ...] = DATASETS

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[2:])

    def index(self, dataset: str) -> int:
        """Where derived version `dataset` is in train and test."""
        if dataset not in self.names:
            raise ValueError(f"dataset = {dataset!r} was not derived; expected one of {list(self.names)}")
        return self.names.index(dataset)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Data:
        """On `device`; images in `dtype` where given (the nets train in the images' dtype)."""
        return Data(self.train.to(device, dtype), self.train_labels.to(device),
                    self.test.to(device, dtype), self.test_labels.to(device), self.classes, self.names)

    @classmethod
    def build(cls, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
              classes: int, study_seed: int, names: Sequence[str] = DATASETS) -> Data:
        """The derived versions `names` of both splits (only those a zoo's choices name:
        a large dataset's versions take memory)."""
        names = tuple(d for d in DATASETS if d in names)
        return cls(torch.stack([nets.derive(train[0], d, study_seed, "train") for d in names]), train[1],
                   torch.stack([nets.derive(test[0], d, study_seed, "test") for d in names]), test[1],
                   classes, names)


def snapshot_steps(total: int, snapshots: int) -> list[int]:
    """Optimiser steps after which snapshots are taken: 0 (initialisation) to `total`, evenly."""
    return [round(k * total / (snapshots - 1)) for k in range(snapshots)] if snapshots > 1 else [total]


def _adam(flat, g, m, v, step, lr):
    b1, b2 = BETAS
    m_adam = m.lerp(g, 1 - b1)
    v_adam = v * b2 + (1 - b2) * g * g
    denom = (v_adam.sqrt() / (1 - b2 ** step) ** 0.5) + EPS
    p_adam = flat - (lr / (1 - b1 ** step)) * (m_adam / denom)
    return p_adam, m_adam, v_adam


def _rmsprop(flat, g, m, v, step, lr):
    v_rms = v * RMS_ALPHA + (1 - RMS_ALPHA) * g * g
    p_rms = flat - lr * (g / (v_rms.sqrt() + EPS))
    return p_rms, m, v_rms


def _momentum(flat, g, m, v, step, lr):
    m_mom = m * MOMENTUM + g
    p_mom = flat - lr * m_mom
    return p_mom, m_mom, v


UPDATES = {"adam": _adam, "rmsprop": _rmsprop, "momentum": _momentum}


def _optimise(flat, g, m, v, step, lr, segments):
    """One optimiser step of every net (rows), each with its own optimiser and learning rate.

    segments: (optimiser, start, stop) of each run of rows that share one
    (train_group sorts the rows so), each updated on its own rows only. m is
    Adam's first moment or the momentum buffer, v Adam's second moment or
    RMSprop's square average (a net uses one optimiser). The three updates
    are written as torch.optim's single-tensor code computes them.
    """
    lr = lr[:, None]
    if len(segments) == 1:
        return UPDATES[segments[0][0]](flat, g, m, v, step, lr)
    out = (torch.empty_like(flat), torch.empty_like(m), torch.empty_like(v))
    for name, a, b in segments:
        for whole, part in zip(out, UPDATES[name](flat[a:b], g[a:b], m[a:b], v[a:b], step, lr[a:b]),
                               strict=True):
            whole[a:b] = part
    return out


@torch.no_grad()
def accuracy(flat: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
             activations: Sequence[str], net: list[dict], chunk: int = 2048) -> torch.Tensor:
    """Top-1 accuracy of each net (rows of flat) on its own images (G, n, C, H, W)."""
    correct = torch.zeros(len(flat), device=flat.device)
    for start in range(0, images.shape[1], chunk):
        logits = nets.forward(flat, images[:, start:start + chunk], activations, net)
        correct += (logits.argmax(-1) == labels[start:start + chunk]).sum(-1)
    return correct / images.shape[1]


def _gradient(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, activations: Sequence[str],
              net: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each net's gradient of its mean cross-entropy (rows): one backward pass of their sum,
    since no net's loss depends on another's weights; and each net's count of the batch
    classified right."""
    flat = flat.detach().requires_grad_()
    logits = nets.forward(flat, x, activations, net)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]
    (g,) = torch.autograd.grad(loss, flat)
    return g, (logits.detach().argmax(-1) == y).sum(-1)


def train_group(rows: Sequence[Mapping], data: Data, *, epochs: int, snapshots: int,
                device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Train nets that share group_key together; their snapshots and final accuracies.

    Returns, in the order of `rows`: `snapshots` (G, S, P), the flat weights
    after snapshot_steps; `test_accuracy` (G,) of the final weights on each
    net's own derived test set; `train_accuracy` (G,), the share of the last
    epoch's training images (augmented where the net augments) classified
    right by the weights of their step, as Keras reports it: no extra pass
    over the training set, which would cost a sixth of a 2-epoch zoo.
    Every draw is made on the CPU from the nets' generators, so a group
    trained on a GPU sees the same batches (its weights agree to float
    tolerance); the results come back to the CPU. The weights take the
    images' dtype (float64 images: float64 training, which the tests use to
    compare with `loop.train_net` where rounding cannot grow).
    """
    device = torch.device(device)
    data = data.to(device)
    keys = {group_key(r) for r in rows}
    if len(keys) != 1:
        raise ValueError(f"a group holds nets of {len(keys)} architectures or batch sizes; "
                         "expected one (space.group_key)")
    # by activation, then optimiser: one call per layer for each activation, one update for
    # each optimiser's run of rows (nets are independent)
    order = sorted(range(len(rows)), key=lambda i: (ACTIVATIONS.index(rows[i]["activation"]),
                                                    OPTIMIZERS.index(rows[i]["optimizer"])))
    rows = [rows[i] for i in order]
    first = rows[0]
    net = nets.architecture(first, data.input_shape, data.classes)
    gens = [torch.Generator().manual_seed(int(r["seed"])) for r in rows]
    flat = torch.stack([nets.init(r, data.input_shape, data.classes, g)
                        for r, g in zip(rows, gens, strict=True)]).to(device, data.train.dtype)
    acts = [r["activation"] for r in rows]
    segments = nets.runs([r["optimizer"] for r in rows])
    which = torch.tensor([data.index(r["dataset"]) for r in rows], device=device)
    rates = torch.tensor([float(r["learning_rate"]) for r in rows], device=device, dtype=flat.dtype)
    batch_size, n, height = int(first["batch_size"]), len(data.train_labels), data.input_shape[1]
    steps = n // batch_size
    if steps < 1:
        raise ValueError(f"batch_size = {batch_size} is larger than the {n} training images")
    at = snapshot_steps(epochs * steps, snapshots)
    saved = [flat.cpu() for _ in at if _ == 0]
    m, v = torch.zeros_like(flat), torch.zeros_like(flat)
    right = torch.zeros(len(rows), device=device)
    t = 0
    for epoch in range(epochs):
        draws = [{k: v.to(device) for k, v in
                  nets.epoch_draws(g, n, batch_size, bool(r["augmentation"]), height).items()}
                 for r, g in zip(rows, gens, strict=True)]
        lr = rates * DECAY ** epoch
        for s in range(steps):
            index = torch.stack([d["order"][s] for d in draws])  # (G, B)
            x = _augment(data.train[which[:, None], index], draws, s)  # (G, B, C, H, W)
            t += 1
            g, hits = _gradient(flat, x, data.train_labels[index], acts, net)
            if epoch == epochs - 1:
                right += hits
            flat, m, v = _optimise(flat, g, m, v, t, lr, segments)
            saved += [flat.cpu() for _ in at if _ == t]
    back = torch.tensor(order).argsort()
    return {
        "snapshots": torch.stack(saved, dim=1)[back],
        "train_accuracy": (right / (steps * batch_size)).cpu()[back],
        "test_accuracy": accuracy(flat, data.test[which], data.test_labels, acts, net).cpu()[back],
    }


def _augment(x: torch.Tensor, draws: list[dict], step: int) -> torch.Tensor:
    """Augment the batches of the nets that augment, in one call (the others' stay as they are)."""
    chosen = [i for i, d in enumerate(draws) if "offsets" in d]
    if not chosen:
        return x
    picked = [draws[i] for i in chosen]
    moved = nets.augment(x[chosen].flatten(0, 1),
                         *(torch.cat([d[key][step] for d in picked])
                           for key in ("offsets", "brightness", "contrast")))
    x[chosen] = moved.view(len(chosen), *x.shape[1:])
    return x
