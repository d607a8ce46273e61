"""Train a registry model on a tensor cache, seeded and deterministic on the CPU.

The curve (one row per epoch and split: loss, accuracy) is kept as Parquet
beside the weights, so a study documents how good its base networks were.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import torch
from torch import nn
from tqdm import tqdm

from lesion import activations, data, files, kinds, models
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
# (activations.forward_with_sites), e.g. the fault study's b3-variance regulariser.
ExtraLoss = Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]

# A study's change to each training batch, given the network as it is at that
# step: (model, images, labels) -> (images, labels), e.g. adversarial examples
# of the current network mixed in (Szegedy et al. 2013, §4.1).
BatchHook = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Network:
    """What is trained: a study's name for the network, how it is built, where it starts.

    arch: its registry architecture (default: `name`); source: a
    lesion.networks.Source to build instead (a network lesion does not
    describe); init: a weights file of the same network to fine-tune from;
    freeze: layers training leaves as they are.
    """

    name: str
    arch: str | None = None
    source: Any = None
    init: str | os.PathLike | None = None
    freeze: Sequence[str] = ()


@dataclass(frozen=True)
class Settings:
    """How it is trained: Adam on shuffled mini-batches of all of the training split or of
    one of its fixed halves P1, P2 (`train_split`; data.training_part, drawn from
    `split_seed`, the study seed, so that every model sees the same halves)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    device: str = "cpu"
    precision: str = "ieee"
    train_split: str = "all"
    split_seed: int | None = None


@dataclass(frozen=True)
class Hook:
    """One study's change to training; train takes a list of them, and a field left at its
    default changes nothing.

    dropout: every hidden layer's neurons dropped with this probability while
    training (inverted dropout; the saved network has none); loss: a term added
    to the cross-entropy (ExtraLoss); batch: a change to each batch (BatchHook);
    masks: parameter name -> bool tensor: only the True entries change (the
    others get no gradient, no weight decay, no optimiser state, and stay bit for
    bit as they started; a norm layer none of whose parameters may change keeps
    its running statistics too); metadata: stored with the weights.
    """

    dropout: float = 0.0
    loss: ExtraLoss | None = None
    batch: BatchHook | None = None
    masks: Mapping[str, torch.Tensor] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dropout: float,
          extra: Sequence[ExtraLoss]) -> torch.Tensor:
    """Cross-entropy of a training batch, with hidden-neuron dropout and extra terms if any."""
    if not dropout and not extra:
        return nn.functional.cross_entropy(model(x), y)
    logits, acts = activations.forward_with_sites(model, x, dropout=dropout, training=True)
    loss = nn.functional.cross_entropy(logits, y)
    for term in extra:
        loss = loss + term(logits, acts)
    return loss


def _start(model_name: str, arch: str, spec, init: str | os.PathLike | None,
           source=None) -> nn.Module:
    """A fresh network (seed the global RNG first): of registry architecture `arch`, or
    built from `source` (lesion.networks.Source, a network lesion does not describe);
    or the weights in `init` to fine-tune."""
    if source is None:
        model = models.build(arch, num_classes=spec.num_classes, input_shape=spec.input_shape,
                             name=model_name)
    else:
        model = models.build_source(source, num_classes=spec.num_classes,
                                    input_shape=spec.input_shape, name=model_name)
    if init is not None:
        start = models.load_weights(init, num_classes=spec.num_classes,
                                    input_shape=spec.input_shape)
        what = str(source) if source is not None else arch
        held = start.lesion_metadata.get("source") or start.lesion_arch
        if held != what:
            kind = "architecture" if source is None else "source"
            raise ValueError(f"init = {str(init)!r} holds {held} weights; expected weights of "
                             f"{kind} {what}")
        model.load_state_dict(start.state_dict())
    return model


def _updates(model: nn.Module, freeze: Sequence[str],
             masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor | None]:
    """The parameters training updates, by name, each with its boolean mask (None: all of it).

    Frozen layers' parameters are left out (and stop needing gradients).
    """
    frozen = {id(p) for name in freeze for p in models.layer(model, name).parameters()}
    params = dict(model.named_parameters())
    unknown = sorted(set(masks or {}) - set(params))
    if unknown:
        raise ValueError(f"masks name {unknown[0]!r}, which is not a parameter of the model; "
                         f"expected some of {list(params)}")
    out = {}
    for name, p in params.items():
        p.requires_grad_(id(p) not in frozen)
        if id(p) in frozen:
            continue
        mask = None if masks is None or name not in masks else masks[name]
        if mask is not None and (mask.dtype != torch.bool or mask.shape != p.shape):
            raise ValueError(f"masks[{name!r}] is {mask.dtype} of shape {tuple(mask.shape)}; "
                             f"expected torch.bool of shape {tuple(p.shape)}")
        out[name] = None if mask is None else mask.to(p.device)
    return out


def _kept_norms(model: nn.Module, updates: Mapping[str, torch.Tensor | None]) -> list[nn.Module]:
    """With masks, the norm layers (BatchNorm and the like: modules with running statistics)
    none of whose parameters training may change: they run in eval mode while the rest
    trains, so that their running statistics stay bit for bit as well (issue 24)."""
    if not any(mask is not None for mask in updates.values()):
        return []

    def kept(name: str) -> bool:
        return name not in updates or (updates[name] is not None and not updates[name].any())

    return [module for prefix, module in model.named_modules()
            if getattr(module, "running_mean", None) is not None
            and all(kept(f"{prefix}.{name}" if prefix else name)
                    for name, _ in module.named_parameters(recurse=False))]


def _train_mode(model: nn.Module, kept_norms: Sequence[nn.Module]) -> None:
    model.train()
    for module in kept_norms:
        module.eval()


def train(network: Network, dataset: str, train_path: str | os.PathLike,
          test_path: str | os.PathLike, weights_out: str | os.PathLike,
          curve_out: str | os.PathLike, settings: Settings, *, hooks: Sequence[Hook] = (),
          checkpoints: Mapping[int, str | os.PathLike] | None = None) -> None:
    """Train `network` as `settings` say, changed by the studies' `hooks`; write its weights
    (with the settings and the hooks' metadata) and its curve (one row per epoch and
    split). `checkpoints` (epoch -> path) saves the weights after those epochs too.
    """
    model_name, init, freeze = network.name, network.init, tuple(network.freeze)
    epochs, batch_size, seed = settings.epochs, settings.batch_size, settings.seed
    learning_rate, weight_decay = settings.learning_rate, settings.weight_decay
    precision, train_split = settings.precision, settings.train_split
    dropout = max((h.dropout for h in hooks), default=0.0)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout = {dropout!r} is out of range; expected a number in [0, 1)")
    extra = [h.loss for h in hooks if h.loss is not None]
    batch_hooks = [h.batch for h in hooks if h.batch is not None]
    given = [h.masks for h in hooks if h.masks is not None]
    if len(given) > 1:
        raise ValueError(f"{len(given)} hooks give masks; expected at most one")
    masks = given[0] if given else None
    late = sorted(e for e in (checkpoints or {}) if not 1 <= e <= epochs)
    if late:
        raise ValueError(f"checkpoint epoch {late[0]} is out of range; expected an epoch in "
                         f"1..{epochs} (epochs = {epochs})")
    dev = pick_device(settings.device, precision)
    if dev.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace (set before its first use);
        # a few CUDA kernels (NLLLoss, AdaptiveAvgPool2d backward) have no deterministic
        # version and would raise: they warn instead, so GPU runs are close, not bit-equal.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    spec = data.get(dataset, split=train_path)
    torch.manual_seed(seed)
    model = _start(model_name, network.arch or model_name, spec, init, network.source).to(dev)
    updates = _updates(model, freeze, masks)
    params = dict(model.named_parameters())
    x_train, y_train = data.load_split(train_path, dataset)
    split_seed = seed if settings.split_seed is None else settings.split_seed
    part = data.training_part(y_train, train_split, seed=split_seed)
    x_train, y_train = x_train[part].to(dev), y_train[part].to(dev)
    x_test, y_test = (t.to(dev) for t in data.load_split(test_path, dataset))
    masked = {name: mask for name, mask in updates.items() if mask is not None}
    kept_norms = _kept_norms(model, updates)
    # With masks, weight decay is added to the gradient here, before masking (Adam's
    # own adds it after any gradient hook, which would move masked entries).
    optimiser = torch.optim.Adam([params[name] for name in updates], lr=learning_rate,
                                 weight_decay=0.0 if masked else weight_decay)
    order = torch.Generator().manual_seed(seed)
    rows = []
    for epoch in tqdm(range(1, epochs + 1), desc=f"train {model_name}", mininterval=1):
        _train_mode(model, kept_norms)
        for batch in torch.randperm(len(y_train), generator=order).split(batch_size):
            batch = batch.to(dev)
            x, y = x_train[batch], y_train[batch]
            for change in batch_hooks:
                x, y = change(model, x, y)
                _train_mode(model, kept_norms)
            optimiser.zero_grad()
            _loss(model, x, y, dropout, extra).backward()
            if masked:
                with torch.no_grad():
                    for name in updates:
                        grad = params[name].grad
                        if grad is None:  # a parameter this batch's loss does not reach
                            continue
                        if weight_decay:
                            grad.add_(params[name], alpha=weight_decay)
                        if name in masked:
                            grad.mul_(masked[name])
            optimiser.step()
        for split, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
            loss, acc = _score(model, x, y)
            rows.append({"epoch": epoch, "split": split, "loss": loss, "accuracy": acc})
        if epoch in (checkpoints or {}):
            models.save_weights(model, checkpoints[epoch], dataset=dataset, epoch=epoch,
                                test_accuracy=rows[-1]["accuracy"], seed=seed)
    log.info("trained %s on %s: %s", model_name, dataset, rows[-2:])
    start = {"init": str(init)} if init is not None else {}
    start |= {"freeze": list(freeze)} if freeze else {}
    start |= {"masked": sorted(masked)} if masked else {}
    start |= {"train_split": train_split} if train_split != "all" else {}
    models.save_weights(model, weights_out, dataset=dataset, epochs=epochs,
                        batch_size=batch_size, learning_rate=learning_rate,
                        weight_decay=weight_decay, seed=seed, precision=precision,
                        test_accuracy=rows[-1]["accuracy"], **start,
                        **{**({"dropout": dropout} if dropout else {}),
                           **{k: v for h in hooks for k, v in h.metadata.items()}})
    files.write_table(pa.Table.from_pylist(rows), curve_out, kind=kinds.TRAINING)
