"""Train a registry model on a tensor cache, seeded and deterministic on the CPU.

The curve (one row per epoch and split: loss, accuracy) is kept as Parquet
beside the weights, so a study documents how good its base networks were.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import torch
from torch import nn
from tqdm import tqdm

from lesion import activations, data, files, io, models, tables
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


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dropout: float,
          extra_loss: ExtraLoss | None) -> torch.Tensor:
    """Cross-entropy of a training batch, with hidden-neuron dropout and an extra term if any."""
    if not dropout and extra_loss is None:
        return nn.functional.cross_entropy(model(x), y)
    logits, acts = activations.forward_with_sites(model, x, dropout=dropout, training=True)
    loss = nn.functional.cross_entropy(logits, y)
    if extra_loss is not None:
        loss = loss + extra_loss(logits, acts)
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


def train(model_name: str, dataset: str, train_path: str | os.PathLike,
          test_path: str | os.PathLike, weights_out: str | os.PathLike,
          curve_out: str | os.PathLike, *, epochs: int, batch_size: int,
          learning_rate: float, weight_decay: float, seed: int, device: str, precision: str,
          dropout: float = 0.0, extra_loss: ExtraLoss | None = None,
          init: str | os.PathLike | None = None, freeze: Sequence[str] = (),
          masks: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
          checkpoints: Mapping[int, str | os.PathLike] | None = None,
          metadata: dict | None = None, arch: str | None = None, train_split: str = "all",
          split_seed: int | None = None, batch_hook: BatchHook | None = None,
          source=None) -> None:
    """Train with Adam on shuffled mini-batches; write weights and curve.

    `dropout` drops every hidden layer's neurons with that probability
    during training (inverted dropout; the saved network has no dropout);
    `extra_loss` is a study's term added to the cross-entropy (see
    ExtraLoss). Fine-tuning: `init` starts from a weights file of the same
    model instead of a fresh network; `freeze` names layers left as they are;
    `masks` (parameter name -> bool tensor, or a safetensors file of them)
    lets only the True entries of a parameter change: the others get no gradient, no weight decay and so no
    optimiser state, and stay bit for bit as they started. `checkpoints`
    (epoch -> path) saves the weights after those epochs. `metadata` is
    stored with the weights beside the settings. `arch` is the registry
    architecture when `model_name` is a study's own name for the network
    (default: the name is the architecture); `train_split` trains on all of the
    training split or on one of its fixed halves P1, P2 (data.training_part,
    drawn from `split_seed`, the study seed, so that every model sees the same halves);
    `batch_hook` changes each batch before its step (see BatchHook);
    `source` (lesion.networks.Source) builds a network lesion does not
    describe (a torchvision or timm model, a user's factory) instead of `arch`.
    """
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout = {dropout!r} is out of range; expected a number in [0, 1)")
    late = sorted(e for e in (checkpoints or {}) if not 1 <= e <= epochs)
    if late:
        raise ValueError(f"checkpoint epoch {late[0]} is out of range; expected an epoch in "
                         f"1..{epochs} (epochs = {epochs})")
    dev = pick_device(device, precision)
    if dev.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace (set before its first use);
        # a few CUDA kernels (NLLLoss, AdaptiveAvgPool2d backward) have no deterministic
        # version and would raise: they warn instead, so GPU runs are close, not bit-equal.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    spec = data.get(dataset, split=train_path)
    if isinstance(masks, str | os.PathLike):
        masks = io.load_tensors(masks)
    torch.manual_seed(seed)
    model = _start(model_name, arch or model_name, spec, init, source).to(dev)
    updates = _updates(model, freeze, masks)
    params = dict(model.named_parameters())
    x_train, y_train = data.load_split(train_path, dataset)
    part = data.training_part(y_train, train_split, seed=seed if split_seed is None else split_seed)
    x_train, y_train = x_train[part].to(dev), y_train[part].to(dev)
    x_test, y_test = (t.to(dev) for t in data.load_split(test_path, dataset))
    masked = {name: mask for name, mask in updates.items() if mask is not None}
    # With masks, weight decay is added to the gradient here, before masking (Adam's
    # own adds it after any gradient hook, which would move masked entries).
    optimiser = torch.optim.Adam([params[name] for name in updates], lr=learning_rate,
                                 weight_decay=0.0 if masked else weight_decay)
    order = torch.Generator().manual_seed(seed)
    rows = []
    for epoch in tqdm(range(1, epochs + 1), desc=f"train {model_name}", mininterval=1):
        model.train()
        for batch in torch.randperm(len(y_train), generator=order).split(batch_size):
            batch = batch.to(dev)
            x, y = x_train[batch], y_train[batch]
            if batch_hook is not None:
                x, y = batch_hook(model, x, y)
                model.train()
            optimiser.zero_grad()
            _loss(model, x, y, dropout, extra_loss).backward()
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
                        **{**({"dropout": dropout} if dropout else {}), **(metadata or {})})
    files.write_table(pa.Table.from_pylist(rows), curve_out, kind=tables.TRAINING)
