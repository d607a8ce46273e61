"""Train one zoo net the plain way: an nn.Module, torch.optim, one net at a time.

The baseline of `bench zoo` and the reference of the tests for
`grouped.train_group`: the same net (same initial weights, same batches,
same augmentation draws, from the same generator in the same order) written
as a person would without vmap. Its flat weights are
`torch.nn.utils.parameters_to_vector(module.parameters())`, PyTorch's own
flattening, which is `space.layout`'s order.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lesion.studies.zoo import nets
from lesion.studies.zoo.grouped import BETAS, DECAY, EPS, MOMENTUM, RMS_ALPHA, Data, snapshot_steps

ACTIVATION_MODULES = {"relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def module(row: Mapping, input_shape, classes: int) -> nn.Sequential:
    """The net of `row` as an nn.Sequential (parameters in space.layout order)."""
    act = ACTIVATION_MODULES[row["activation"]]
    parts: list[nn.Module] = []
    flat_done = False
    for layer in nets.architecture(row, input_shape, classes):
        if layer["kind"] == "conv":
            parts += [nn.Conv2d(layer["in"], layer["out"], layer["k"], padding=layer["k"] // 2), act()]
            if layer["pool"]:
                parts.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        if not flat_done:
            parts.append(nn.Flatten())
            flat_done = True
        parts.append(nn.Linear(layer["in"], layer["out"]))
        if layer["name"] != "out":
            parts.append(act())
    return nn.Sequential(*parts)


def optimiser(row: Mapping, params) -> torch.optim.Optimizer:
    lr = float(row["learning_rate"])
    kind = row["optimizer"]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS, foreach=False)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=RMS_ALPHA, eps=EPS, foreach=False)
    if kind == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, foreach=False)
    raise ValueError(f"optimizer = {kind!r}; expected one of adam, rmsprop, momentum")


def train_net(row: Mapping, data: Data, *, epochs: int, snapshots: int,
              device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One net trained alone; the same outputs as grouped.train_group for one row
    (the weights in the images' dtype, as there)."""
    data = data.to(device)
    gen = torch.Generator().manual_seed(int(row["seed"]))
    model = module(row, data.input_shape, data.classes).to(device, data.train.dtype)
    start = nets.init(row, data.input_shape, data.classes, gen).to(device, data.train.dtype)
    nn.utils.vector_to_parameters(start, model.parameters())
    opt = optimiser(row, model.parameters())
    which = data.index(row["dataset"])
    images, labels = data.train[which], data.train_labels
    batch_size, n = int(row["batch_size"]), len(labels)
    steps = n // batch_size
    at = snapshot_steps(epochs * steps, snapshots)
    flat = lambda: nn.utils.parameters_to_vector(model.parameters()).detach().cpu()  # noqa: E731
    saved = [flat() for _ in at if _ == 0]
    right = 0
    t = 0
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = float(row["learning_rate"]) * DECAY ** epoch
        draws = {k: v.to(device) for k, v in
                 nets.epoch_draws(gen, n, batch_size, bool(row["augmentation"]), data.input_shape[1]).items()}
        for s in range(steps):
            index = draws["order"][s]
            x = images[index]
            if "offsets" in draws:
                x = nets.augment(x, draws["offsets"][s], draws["brightness"][s], draws["contrast"][s])
            opt.zero_grad()
            logits = model(x)
            nn.functional.cross_entropy(logits, labels[index]).backward()
            opt.step()
            if epoch == epochs - 1:  # the last epoch's batches, as they were classified
                right += int((logits.argmax(1) == labels[index]).sum())
            t += 1
            saved += [flat() for _ in at if _ == t]
    with torch.no_grad():
        test = (model(data.test[which]).argmax(1) == data.test_labels).float().mean()
    return {"snapshots": torch.stack(saved), "train_accuracy": torch.tensor(right / (steps * batch_size)),
            "test_accuracy": test.cpu()}
