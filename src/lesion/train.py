"""Train a registry model on a tensor cache, seeded and deterministic on the CPU.

The curve (one row per epoch and split: loss, accuracy) is kept as Parquet
beside the weights, so a study documents how good its base networks were.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pyarrow as pa
import torch
from torch import nn
from tqdm import tqdm

from lesion import activations, data, files, models
from lesion.evaluate import pick_device

log = logging.getLogger(__name__)


@torch.no_grad()
def _score(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
           batch_size: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on a split."""
    model.eval()
    loss = correct = 0.0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start:start + batch_size])
        y = labels[start:start + batch_size]
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return loss / len(labels), correct / len(labels)


# An extra loss term a study adds to the cross-entropy: f(logits, neurons)
# with `neurons` the activations at every hidden layer's neurons
# (activations.hidden_sites), e.g. the fault study's b3-variance regulariser.
ExtraLoss = Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dropout: float,
          extra_loss: ExtraLoss | None) -> torch.Tensor:
    """Cross-entropy of a training batch, with hidden-neuron dropout and an extra term if any."""
    if not dropout and extra_loss is None:
        return nn.functional.cross_entropy(model(x), y)
    parts = activations.flat_stages(model)
    logits, acts = activations.forward_with_sites(parts, x, activations.hidden_sites(model),
                                                  dropout=dropout, training=True)
    loss = nn.functional.cross_entropy(logits, y)
    if extra_loss is not None:
        loss = loss + extra_loss(logits, acts)
    return loss


def train(model_name: str, dataset: str, train_path: str | os.PathLike,
          test_path: str | os.PathLike, weights_out: str | os.PathLike,
          curve_out: str | os.PathLike, *, epochs: int, batch_size: int,
          learning_rate: float, weight_decay: float, seed: int, device: str, precision: str,
          dropout: float = 0.0, extra_loss: ExtraLoss | None = None,
          metadata: dict | None = None) -> None:
    """Train with Adam on shuffled mini-batches; write weights and curve.

    `dropout` drops every hidden layer's neurons with that probability
    during training (inverted dropout; the saved network has no dropout);
    `extra_loss` is a study's term added to the cross-entropy (see
    ExtraLoss); `metadata` is stored with the weights beside the settings.
    """
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout = {dropout!r} is out of range; expected a number in [0, 1)")
    dev = pick_device(device, precision)
    if dev.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace (set before its first use);
        # a few CUDA kernels (NLLLoss, AdaptiveAvgPool2d backward) have no deterministic
        # version and would raise: they warn instead, so GPU runs are close, not bit-equal.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    spec = data.get(dataset)
    torch.manual_seed(seed)
    model = models.build(model_name, num_classes=spec.num_classes,
                         input_shape=spec.input_shape).to(dev)
    x_train, y_train = (t.to(dev) for t in data.load_split(train_path))
    x_test, y_test = (t.to(dev) for t in data.load_split(test_path))
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    rows = []
    for epoch in tqdm(range(1, epochs + 1), desc=f"train {model_name}", mininterval=1):
        model.train()
        for batch in torch.randperm(len(y_train), generator=order).split(batch_size):
            batch = batch.to(dev)
            optimiser.zero_grad()
            _loss(model, x_train[batch], y_train[batch], dropout, extra_loss).backward()
            optimiser.step()
        for split, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
            loss, acc = _score(model, x, y)
            rows.append({"epoch": epoch, "split": split, "loss": loss, "accuracy": acc})
    log.info("trained %s on %s: %s", model_name, dataset, rows[-2:])
    models.save_weights(model.cpu(), weights_out, dataset=dataset, epochs=epochs,
                        batch_size=batch_size, learning_rate=learning_rate,
                        weight_decay=weight_decay, seed=seed, precision=precision,
                        test_accuracy=rows[-1]["accuracy"],
                        **{**({"dropout": dropout} if dropout else {}), **(metadata or {})})
    files.write_table(pa.Table.from_pylist(rows), curve_out)
